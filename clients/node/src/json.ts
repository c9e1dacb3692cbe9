// Exact JSON: PostgreSQL's jsonb text parsed with every number as a decimal.js
// Decimal (JSON.parse would turn 12.5 into a binary float). Only ever fed the
// text that jsonb_out printed, but it checks its input all the same.
import { Decimal } from "decimal.js";

/** A JSON value whose numbers are exact decimals. */
export type JsonValue = null | boolean | string | Decimal | JsonValue[] | { [key: string]: JsonValue };

export function parseExactJson(text: string): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`pgbilling: ${what} at position ${i} of JSON ${JSON.stringify(text.slice(0, 200))}`);
  };
  const skip = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const value = (): JsonValue => {
    skip();
    const c = text[i];
    if (c === "{") {
      i++;
      const out: { [key: string]: JsonValue } = {};
      skip();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail("expected a key");
        const key = string();
        skip();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        out[key] = value();
        skip();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return out;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const out: JsonValue[] = [];
      skip();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value());
        skip();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return out;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) return fail("unexpected character");
    i += m[0].length;
    return new Decimal(m[0]);
  };
  const string = (): string => {
    // text[i] is the opening quote; JSON.parse decodes the escapes of one string literal exactly
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const result = value();
  skip();
  if (i !== text.length) fail("trailing characters");
  return result;
}
