/**
 * A small language guesser: writing script first, then stop-word rates for Latin-script text.
 * Private: the public entry points are `detectLanguage` and `languageFilter` in `clean.ts`.
 * @module
 */

/** Languages told apart by stop words (Latin script). */
export const STOPWORD_LANGUAGES = ["en", "de", "fr", "es"] as const;

/**
 * A language code this guesser can return (ISO 639-1, `und` = undetermined). The first four are
 * told apart by stop words ({@linkcode STOPWORD_LANGUAGES}, spelled out so the public type stands
 * alone; `bestLang = lang` in `guessLanguage` fails to compile if the two drift apart).
 */
export type LanguageCode =
  | "en"
  | "de"
  | "fr"
  | "es"
  | "ru"
  | "el"
  | "ar"
  | "he"
  | "zh"
  | "ja"
  | "ko"
  | "und";

// About 50 frequent function words per language. Some overlap (fr/es "la", "que"); the best rate
// wins, so overlap only narrows the margin between those two.
const STOPWORDS: Record<(typeof STOPWORD_LANGUAGES)[number], ReadonlySet<string>> = {
  en: new Set(
    ("the of and to in is that for it as was with be by on not he this are or his from at which " +
      "but have an they you were her she their has been if will can all would there its we what " +
      "when who may also these into more than such other then them only so any should about")
      .split(" "),
  ),
  de: new Set(
    ("der die und den das ist nicht ein eine zu mit sich von auf für dem des im auch es werden wird " +
      "sie ich wir er aus bei nach wie oder aber noch nur sind kann können wenn über dass daß einen " +
      "einem einer zum zur vom sehr mehr diese dieser dieses durch hat haben wurde ohne unter")
      .split(" "),
  ),
  fr: new Set(
    ("le la les et des du un une est pour qui dans que pas au aux ce cette sur avec sont ou mais par " +
      "ne il elle nous vous ils leur plus être été fait comme tout tous aussi très sans sous entre")
      .split(" "),
  ),
  es: new Set(
    ("el la los las y del que en un una es por con para se no al lo como más pero sus su le ya o " +
      "este esta son entre cuando muy sin sobre también hasta hay donde desde todo nos durante")
      .split(" "),
  ),
};

// Script -> language for scripts that (mostly) name one language in a training corpus.
const SCRIPTS: [RegExp, LanguageCode][] = [
  [/\p{Script=Cyrillic}/u, "ru"],
  [/\p{Script=Greek}/u, "el"],
  [/\p{Script=Arabic}/u, "ar"],
  [/\p{Script=Hebrew}/u, "he"],
  [/[\p{Script=Hiragana}\p{Script=Katakana}]/u, "ja"],
  [/\p{Script=Hangul}/u, "ko"],
  [/\p{Script=Han}/u, "zh"],
];

/** Result of a language guess. */
export interface LanguageGuess {
  /** Best language, or "und" (undetermined). */
  language: LanguageCode;
  /** Confidence-like score in [0, 1]: stop-word rate of the best language, or the script share. */
  score: number;
  /** Stop-word rate per Latin-script language. */
  scores: Record<string, number>;
}

/** Guess the language of a text; see `detectLanguage` in `clean.ts` for the rules and limits. */
export function guessLanguage(text: string, minScore: number): LanguageGuess {
  const letters = text.match(/\p{L}/gu) ?? [];
  const scores: Record<string, number> = {};
  if (letters.length === 0) return { language: "und", score: 0, scores };
  const latin = text.match(/\p{Script=Latin}/gu)?.length ?? 0;
  const perScript = new Map<LanguageCode, number>();
  if (latin < letters.length) {
    for (const [re, lang] of SCRIPTS) {
      const n = text.match(new RegExp(re.source, "gu"))?.length ?? 0;
      if (n > 0) perScript.set(lang, n);
    }
  }
  // Japanese text mixes kana with Han; any kana share of a CJK text makes it Japanese.
  if ((perScript.get("ja") ?? 0) > 0 && (perScript.get("zh") ?? 0) > 0) {
    perScript.set("ja", (perScript.get("ja") ?? 0) + (perScript.get("zh") ?? 0));
    perScript.delete("zh");
  }
  let best: LanguageCode = "und", bestCount = latin;
  for (const [lang, count] of perScript) {
    if (count > bestCount) {
      best = lang;
      bestCount = count;
    }
  }
  if (best !== "und") {
    const share = bestCount / letters.length;
    return { language: share >= 0.5 ? best : "und", score: share, scores };
  }
  const words = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  let bestLang: LanguageCode = "und", bestRate = 0;
  for (const lang of STOPWORD_LANGUAGES) {
    let hits = 0;
    for (const w of words) if (STOPWORDS[lang].has(w)) hits++;
    const rate = hits / words.length;
    scores[lang] = rate;
    if (rate > bestRate) {
      bestRate = rate;
      bestLang = lang;
    }
  }
  // German-only letters tip close calls between German and the others.
  if (/[äöüß]/i.test(text) && (scores.de ?? 0) >= bestRate * 0.8 && bestLang !== "de") {
    bestLang = "de";
    bestRate = scores.de;
  }
  return { language: bestRate >= minScore ? bestLang : "und", score: bestRate, scores };
}
