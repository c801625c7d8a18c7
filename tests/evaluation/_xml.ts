/**
 * A tiny XML well-formedness check and tree for the SVG tests (no dependency), and a check that an
 * SVG is plain: SVG 1.1, no scripts, no external references.
 * @module
 */
import { assert } from "../_assert.ts";

/** An element: name, attributes, child elements and its own decoded text. */
export interface Node {
  name: string;
  attrs: Record<string, string>;
  children: Node[];
  text: string; // decoded text directly inside
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(s: string, where: string): string {
  if (/<|&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(s)) {
    throw new SyntaxError(`bad character data in ${where}: ${s}`);
  }
  return s.replace(
    /&(#x[0-9a-f]+|#\d+|\w+);/gi,
    (_, e: string) =>
      e[0] === "#"
        ? String.fromCodePoint(e[1].toLowerCase() === "x" ? parseInt(e.slice(2), 16) : Number(e.slice(1)))
        : ENTITIES[e],
  );
}

/** Parse XML (elements, attributes, text, the XML declaration, comments); throw when malformed. */
export function parseXml(xml: string): Node {
  const root: Node = { name: "#document", attrs: {}, children: [], text: "" };
  const stack = [root];
  const re =
    /<\?[^?]*\?>|<!--[\s\S]*?-->|<\/([A-Za-z][\w:.-]*)\s*>|<([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    const top = stack[stack.length - 1];
    if (m[6]) {
      throw new SyntaxError(`malformed tag at offset ${m.index}: ${xml.slice(m.index, m.index + 40)}`);
    }
    if (m[5] !== undefined) {
      if (top === root && m[5].trim()) throw new SyntaxError(`text outside the root: ${m[5]}`);
      top.text += decode(m[5], `<${top.name}>`);
    } else if (m[1]) {
      if (top.name !== m[1]) throw new SyntaxError(`</${m[1]}> closes <${top.name}>`);
      stack.pop();
    } else if (m[2]) {
      const attrs: Record<string, string> = {};
      for (const a of m[3].matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        if (a[1] in attrs) throw new SyntaxError(`duplicate attribute ${a[1]} on <${m[2]}>`);
        attrs[a[1]] = decode(a[2] ?? a[3], `${m[2]}@${a[1]}`);
      }
      const node: Node = { name: m[2], attrs, children: [], text: "" };
      if (top === root && root.children.length) throw new SyntaxError("two root elements");
      top.children.push(node);
      if (!m[4]) stack.push(node);
    }
  }
  if (stack.length !== 1) throw new SyntaxError(`unclosed <${stack[stack.length - 1].name}>`);
  assert.equal(root.children.length, 1, "one root element");
  return root.children[0];
}

/** Every node under (and including) `node` that `pred` accepts, in document order. */
export function all(node: Node, pred: (n: Node) => boolean): Node[] {
  return [...(pred(node) ? [node] : []), ...node.children.flatMap((c) => all(c, pred))];
}
/** A predicate: the node's `class` attribute lists `cls`. */
export const hasClass = (cls: string) => (n: Node) => (n.attrs.class ?? "").split(" ").includes(cls);
/** The text of a node's `<title>` child (the tooltip). */
export const titleOf = (n: Node) => n.children.find((c) => c.name === "title")?.text;

/** Parse `svg` and check it is plain SVG 1.1: no scripts, foreign objects, images, handlers or links. */
export function checkPlainSvg(svg: string): Node {
  const doc = parseXml(svg);
  assert.equal(doc.name, "svg");
  assert.equal(doc.attrs.xmlns, "http://www.w3.org/2000/svg");
  assert.equal(doc.attrs.version, "1.1");
  const names = new Set(all(doc, () => true).map((n) => n.name));
  assert.ok(!names.has("script") && !names.has("foreignObject") && !names.has("image"), [...names].join());
  assert.ok(!/\son\w+=|href=/.test(svg), "no event handlers, no external references");
  return doc;
}
