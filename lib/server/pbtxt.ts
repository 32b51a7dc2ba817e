/**
 * Protocol Buffers text format (what Triton's config.pbtxt files are written in), read into a
 * tree of fields that keeps each field's line for messages that name it. The schema is
 * applied afterwards (triton-config.ts): the text format itself does not say whether `7` is
 * an int32 or a float, or whether `KIND_CPU` is an enum value.
 *
 * Covered: `name: value` and `name { ... }` / `name: { ... }` / `name < ... >`, list values
 * `name: [1, 2]` and `name [{ ... }, { ... }]` (the colon optional), double- and single-quoted strings with C
 * escapes (adjacent strings concatenate), integers (decimal, hex, octal), floats (with `f`,
 * inf, nan), identifiers (enum values, true/false), `#` comments, `,` or `;` between fields.
 * Not covered (Triton configs do not use them): extensions (`[pkg.ext]`) and `Any` expansion.
 */
import { KilnError } from '../errors';

export type TextScalar =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number; text: string }
  | { kind: 'identifier'; value: string };

export interface TextMessage {
  kind: 'message';
  fields: TextField[];
  line: number;
}

export interface TextField {
  name: string;
  line: number;
  value: TextScalar | TextMessage;
}

interface Token {
  type: 'identifier' | 'number' | 'string' | 'punct';
  text: string;
  /** For strings: the unescaped value. */
  value?: string;
  line: number;
}

function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  const fail = (what: string): never => {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}:${line}: ${what}`);
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      i++;
    } else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if ('{}[]<>:,;'.includes(c)) {
      tokens.push({ type: 'punct', text: c, line });
      i++;
    } else if (c === '"' || c === "'") {
      const start = line;
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length || text[i] === '\n') fail('a string is not closed on its line');
        const d = text[i];
        if (d === c) {
          i++;
          break;
        }
        if (d !== '\\') {
          value += d;
          i++;
          continue;
        }
        const e = text[i + 1];
        i += 2;
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v', '\\': '\\', "'": "'", '"': '"', '?': '?' };
        if (e !== undefined && e in simple) {
          value += simple[e];
        } else if (e === 'x' || e === 'X') {
          const hex = /^[0-9a-fA-F]{1,2}/.exec(text.slice(i))?.[0] ?? fail('\\x needs hex digits');
          value += String.fromCharCode(parseInt(hex, 16));
          i += hex.length;
        } else if (e !== undefined && /[0-7]/.test(e)) {
          const oct = (e + (/^[0-7]{0,2}/.exec(text.slice(i))?.[0] ?? ''));
          value += String.fromCharCode(parseInt(oct, 8));
          i += oct.length - 1;
        } else {
          fail(`unknown escape \\${e ?? ''} in a string`);
        }
      }
      tokens.push({ type: 'string', text: c, value, line: start });
    } else {
      const word = /^[A-Za-z0-9_.+-]+/.exec(text.slice(i))?.[0];
      if (!word) fail(`unexpected character ${JSON.stringify(c)}`);
      const w = word as string;
      tokens.push({ type: /^[A-Za-z_][A-Za-z0-9_]*$/.test(w) ? 'identifier' : 'number', text: w, line });
      i += w.length;
    }
  }
  return tokens;
}

/** A number token's value: decimal, hex or octal integers, floats with an optional f suffix, inf and nan. */
function numberOf(text: string): number | undefined {
  const t = text.toLowerCase();
  const sign = t.startsWith('-') ? -1 : 1;
  const body = t.replace(/^[+-]/, '');
  if (/^0x[0-9a-f]+$/.test(body)) return sign * parseInt(body.slice(2), 16);
  if (/^0[0-7]+$/.test(body)) return sign * parseInt(body, 8);
  if (/^(inf|infinity)f?$/.test(body)) return sign * Infinity;
  if (body === 'nan' || body === 'nanf') return NaN;
  if (/^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?f?$/.test(body)) return sign * Number(body.replace(/f$/, ''));
  return undefined;
}

/** Parses `text` (the contents of `file`, named in errors with the line). */
export function parseTextFormat(text: string, file: string): TextMessage {
  const tokens = tokenize(text, file);
  let p = 0;
  const at = (): Token | undefined => tokens[p];
  const lineOf = (): number => at()?.line ?? tokens[tokens.length - 1]?.line ?? 1;
  const fail = (what: string): never => {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}:${lineOf()}: ${what}`);
  };
  const isPunct = (c: string): boolean => at()?.type === 'punct' && at()?.text === c;

  const scalar = (): TextScalar => {
    const t = at();
    if (!t) return fail('a value is missing at the end of the file');
    if (t.type === 'string') {
      let value = '';
      while (at()?.type === 'string') value += (tokens[p++].value as string);
      return { kind: 'string', value };
    }
    p++;
    if (t.type === 'number' || (t.type === 'identifier' && /^(inf|infinity|nan)$/i.test(t.text))) {
      const n = numberOf(t.text);
      if (n === undefined) fail(`"${t.text}" is not a number`);
      return { kind: 'number', value: n as number, text: t.text };
    }
    if (t.type === 'identifier') return { kind: 'identifier', value: t.text };
    return fail(`expected a value, found "${t.text}"`);
  };

  let depth = 0;
  const message = (close: string | undefined, line: number): TextMessage => {
    if (++depth > 64) fail('messages nested more than 64 deep');
    const fields: TextField[] = [];
    for (;;) {
      const t = at();
      if (!t) {
        if (close) fail(`"${close}" expected before the end of the file (the message opened on line ${line})`);
        return { kind: 'message', fields, line };
      }
      if (close && isPunct(close)) {
        p++;
        depth--;
        return { kind: 'message', fields, line };
      }
      if (t.type !== 'identifier') fail(`expected a field name, found "${t.text}"`);
      p++;
      const name = t.text;
      const colon = isPunct(':');
      if (colon) p++;
      const push = (value: TextScalar | TextMessage, l: number): void => {
        fields.push({ name, line: l, value });
      };
      const sub = (): TextMessage => {
        const open = at() as Token;
        p++;
        return message(open.text === '{' ? '}' : '>', open.line);
      };
      if (isPunct('{') || isPunct('<')) {
        push(sub(), t.line);
      } else if (isPunct('[')) {
        // A list; the colon may be left out before a list of messages (`input [ { ... } ]`).
        p++;
        if (isPunct(']')) {
          p++;
        } else {
          for (;;) {
            const l = lineOf();
            push(isPunct('{') || isPunct('<') ? sub() : scalar(), l);
            if (isPunct(',')) {
              p++;
              continue;
            }
            if (isPunct(']')) {
              p++;
              break;
            }
            fail(`"," or "]" expected in the list of "${name}"`);
          }
        }
      } else if (colon) {
        push(scalar(), t.line);
      } else {
        fail(`":" or "{" expected after the field name "${name}"`);
      }
      if (isPunct(',') || isPunct(';')) p++;
    }
  };

  return message(undefined, 1);
}
