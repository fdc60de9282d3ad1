import { HubError } from './errors.js';
import { isObject, type Json, type JsonObject } from './twin.js';

/**
 * The part of IoT Hub's query language the emulator understands:
 * `SELECT * FROM devices [WHERE <cond> [AND|OR <cond>]...]`, a condition being
 * `<path> <op> <literal>` (op one of = != <> < <= > >=) or `IS_DEFINED(<path>)`, paths like
 * `deviceId`, `tags.site`, `properties.reported.iothubDM.firmwareUpdate.status`. AND binds tighter than OR.
 */
export type TwinFilter = (twin: JsonObject) => boolean;

type Token = { kind: 'word' | 'string' | 'number' | 'op' | 'paren' | 'comma' | 'star'; text: string };

function tokenize(query: string): Token[] {
  const tokens: Token[] = [];
  const re = /\s*(?:('(?:[^']|'')*'|"(?:[^"])*")|(-?\d+(?:\.\d+)?)|(<=|>=|!=|<>|=|<|>)|([()])|(,)|(\*)|([A-Za-z_$][\w$.]*))/y;
  let pos = 0;
  while (pos < query.length) {
    if (/^\s*$/.test(query.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(query);
    if (!m) throw new HubError('BadRequest', `query: cannot read '${query.slice(pos).trim().slice(0, 20)}'`);
    pos = re.lastIndex;
    if (m[1]) tokens.push({ kind: 'string', text: m[1].slice(1, -1).replace(/''/g, "'") });
    else if (m[2]) tokens.push({ kind: 'number', text: m[2] });
    else if (m[3]) tokens.push({ kind: 'op', text: m[3] });
    else if (m[4]) tokens.push({ kind: 'paren', text: m[4] });
    else if (m[5]) tokens.push({ kind: 'comma', text: m[5] });
    else if (m[6]) tokens.push({ kind: 'star', text: m[6] });
    else tokens.push({ kind: 'word', text: m[7] });
  }
  return tokens;
}

function lookup(twin: JsonObject, path: string): Json | undefined {
  let node: Json | undefined = twin;
  for (const part of path.split('.')) {
    if (!isObject(node)) return undefined;
    node = node[part];
  }
  return node;
}

function compare(a: Json | undefined, op: string, b: Json): boolean {
  if (a === undefined) return false;
  switch (op) {
    case '=':
      return a === b;
    case '!=':
    case '<>':
      return a !== b;
  }
  if (typeof a !== typeof b || (typeof a !== 'number' && typeof a !== 'string')) return false;
  const x = a as number | string;
  const y = b as number | string;
  return op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
}

export function parseQuery(query: string): TwinFilter {
  const tokens = tokenize(query);
  let i = 0;
  const peek = () => tokens[i];
  const word = (w: string) => peek()?.kind === 'word' && peek().text.toUpperCase() === w;
  const expect = (w: string) => {
    if (!word(w)) throw new HubError('BadRequest', `query: expected ${w}`);
    i++;
  };
  expect('SELECT');
  if (peek()?.kind !== 'star') throw new HubError('BadRequest', 'query: the emulator supports SELECT * only');
  i++;
  expect('FROM');
  if (!word('DEVICES')) throw new HubError('BadRequest', 'query: the emulator supports FROM devices only');
  i++;
  if (i === tokens.length) return () => true;
  expect('WHERE');

  const condition = (): TwinFilter => {
    if (word('IS_DEFINED')) {
      i++;
      if (peek()?.text !== '(') throw new HubError('BadRequest', 'query: expected ( after IS_DEFINED');
      i++;
      const path = tokens[i++];
      if (path?.kind !== 'word' || tokens[i++]?.text !== ')') throw new HubError('BadRequest', 'query: IS_DEFINED takes one property path');
      return (t) => lookup(t, path.text) !== undefined;
    }
    if (peek()?.text === '(') {
      i++;
      const inner = orExpr();
      if (tokens[i++]?.text !== ')') throw new HubError('BadRequest', 'query: missing )');
      return inner;
    }
    const path = tokens[i++];
    const op = tokens[i++];
    const lit = tokens[i++];
    if (path?.kind !== 'word' || op?.kind !== 'op' || !lit) throw new HubError('BadRequest', 'query: expected <property> <operator> <value>');
    let value: Json;
    if (lit.kind === 'string') value = lit.text;
    else if (lit.kind === 'number') value = Number(lit.text);
    else if (lit.kind === 'word' && ['TRUE', 'FALSE', 'NULL'].includes(lit.text.toUpperCase())) {
      value = lit.text.toUpperCase() === 'NULL' ? null : lit.text.toUpperCase() === 'TRUE';
    } else throw new HubError('BadRequest', `query: '${lit.text}' is not a value`);
    return (t) => compare(lookup(t, path.text), op.text, value);
  };
  const andExpr = (): TwinFilter => {
    let left = condition();
    while (word('AND')) {
      i++;
      const l = left;
      const r = condition();
      left = (t) => l(t) && r(t);
    }
    return left;
  };
  const orExpr = (): TwinFilter => {
    let left = andExpr();
    while (word('OR')) {
      i++;
      const l = left;
      const r = andExpr();
      left = (t) => l(t) || r(t);
    }
    return left;
  };
  const filter = orExpr();
  if (i !== tokens.length) throw new HubError('BadRequest', `query: unexpected '${tokens[i].text}'`);
  return filter;
}
