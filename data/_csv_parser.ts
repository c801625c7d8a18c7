/**
 * Private helper of `csv.ts`: an incremental RFC 4180 parser. Text arrives in chunks of any size
 * (a quoted field may span chunks and lines); complete rows come out with the line number where
 * they start. Rules: fields split by the delimiter, rows by `\n`, `\r\n` or a lone `\r` (old Mac and
 * Excel "CSV (Macintosh)" files, which pandas reads so); a field that starts with
 * `"` is quoted, may hold delimiters and newlines, and writes `"` as `""`; blank lines are skipped.
 * @module
 */

/** One parsed row and the 1-based line on which it starts. */
export interface CsvRow {
  fields: string[];
  line: number;
}

/** Incremental CSV parser: `push` chunks, then `end`; both return the rows completed so far. */
export class CsvParser {
  #delimiter: string;
  #source: string;
  #field = "";
  #row: string[] = [];
  #quoted = false; // inside a quoted field
  #afterQuote = false; // just read the closing quote of a quoted field
  #wasQuoted = false; // the current field was quoted (so an empty row is not blank)
  #line = 1;
  #rowLine = 1;
  #quoteLine = 1;
  #cr = false; // the last character ended a row with \r: a \n right after it belongs to it

  /** @param delimiter one character; @param source the file name, for messages */
  constructor(delimiter: string, source: string) {
    this.#delimiter = delimiter;
    this.#source = source;
  }

  #endField(): void {
    this.#row.push(this.#field);
    this.#field = "";
    this.#afterQuote = false;
  }

  #endRow(out: CsvRow[]): void {
    this.#endField();
    const blank = this.#row.length === 1 && this.#row[0] === "" && !this.#wasQuoted;
    if (!blank) out.push({ fields: this.#row, line: this.#rowLine });
    this.#row = [];
    this.#wasQuoted = false;
    this.#line++;
    this.#rowLine = this.#line;
  }

  /** Parse a chunk; returns the rows it completed. */
  push(chunk: string): CsvRow[] {
    const out: CsvRow[] = [];
    const d = this.#delimiter;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (this.#cr) {
        this.#cr = false;
        if (c === "\n") continue; // \r\n: the row ended at the \r
      }
      if (this.#quoted) {
        if (c === '"') {
          this.#quoted = false;
          this.#afterQuote = true;
        } else {
          if (c === "\n") this.#line++;
          // Plain runs are copied in one slice (speed on large files).
          let j = i + 1;
          while (j < chunk.length && chunk[j] !== '"' && chunk[j] !== "\n") j++;
          this.#field += chunk.slice(i, j);
          i = j - 1;
        }
      } else if (this.#afterQuote) {
        if (c === '"') {
          this.#field += '"';
          this.#quoted = true;
          this.#afterQuote = false;
        } else if (c === d) this.#endField();
        else if (c === "\n" || c === "\r") {
          this.#endRow(out);
          this.#cr = c === "\r";
        } else {
          throw new SyntaxError(
            `Cannot parse ${this.#source}:${this.#line}: character ${
              JSON.stringify(c)
            } after a closing quote; ` +
              `inside a quoted field write a quote as "" (RFC 4180)`,
          );
        }
      } else if (c === '"' && this.#field === "") {
        this.#quoted = true;
        this.#wasQuoted = true;
        this.#quoteLine = this.#line;
      } else if (c === d) this.#endField();
      else if (c === "\n" || c === "\r") {
        this.#endRow(out);
        this.#cr = c === "\r";
      } else {
        let j = i + 1;
        while (j < chunk.length && chunk[j] !== d && chunk[j] !== "\n" && chunk[j] !== "\r") j++;
        this.#field += chunk.slice(i, j);
        i = j - 1;
      }
    }
    return out;
  }

  /** Finish: returns the last row if the text did not end with a newline. */
  end(): CsvRow[] {
    if (this.#quoted) {
      throw new SyntaxError(
        `Cannot parse ${this.#source}:${this.#quoteLine}: a quoted field starting on this line is never closed; ` +
          `add the closing quote`,
      );
    }
    const out: CsvRow[] = [];
    if (this.#field !== "" || this.#row.length || this.#afterQuote) this.#endRow(out);
    return out;
  }
}
