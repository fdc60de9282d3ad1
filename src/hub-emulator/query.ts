import { HubError } from './errors.js';
import { isObject, type Json, type JsonObject } from './twin.js';

/**
 * The part of IoT Hub's query language the emulator understands:
 *
 *   SELECT * | <item>[, <item>]... FROM devices | devices.jobs [WHERE <condition>] [GROUP BY <path>]
 *
 * an item being a property path or `COUNT()`, either with `AS <alias>`. Conditions: `<path> <op>
 * <literal>` (= != <> < <= > >=), `<path> [NOT] IN [<literal>, ...]`, `IS_DEFINED(<path>)`, `NOT`,
 * `AND` (binds tighter than `OR`), `OR`, parentheses. Paths like `deviceId`, `tags.site`,
 * `properties.reported.piota.state`, `configurations.[[my-config]].status`; over `devices.jobs` a
 * path may start with `devices.jobs.`. As in IoT Hub, a comparison with a property that is not
 * there is undefined, not false: neither `x = 1` nor `NOT (x = 1)` holds for a device without x.
 */
export type TwinFilter = (twin: JsonObject) => boolean;

export type QuerySource = 'devices' | 'devices.jobs';

export interface CompiledQuery {
  source: QuerySource;
  /** True for `SELECT *`: rows come back whole (the SDK's nextAsTwin reads them as twins). */
  selectsAll: boolean;
  filter: TwinFilter;
  /** Projection, COUNT() and GROUP BY over the rows that passed the filter. */
  shape(rows: JsonObject[]): JsonObject[];
}

type Token = { kind: 'word' | 'string' | 'number' | 'op' | 'paren' | 'bracket' | 'comma' | 'star'; text: string };
/** Three-valued logic: undefined is "unknown" (a property that is not there). */
type Truth = boolean | undefined;
type Condition = (row: JsonObject) => Truth;

const NAME = String.raw`[A-Za-z_$][\w$]*`;
const SEGMENT = String.raw`(?:${NAME}|\[\[[^\]]*\]\])`;

function tokenize(query: string): Token[] {
  const tokens: Token[] = [];
  const re = new RegExp(
    String.raw`\s*(?:('(?:[^']|'')*'|"(?:[^"])*")|(-?\d+(?:\.\d+)?)|(<=|>=|!=|<>|=|<|>)|([()])|([\[\]])|(,)|(\*)|(${NAME}(?:\.${SEGMENT})*))`,
    'y',
  );
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
    else if (m[5]) tokens.push({ kind: 'bracket', text: m[5] });
    else if (m[6]) tokens.push({ kind: 'comma', text: m[6] });
    else if (m[7]) tokens.push({ kind: 'star', text: m[7] });
    else tokens.push({ kind: 'word', text: m[8] });
  }
  return tokens;
}

/** `configurations.[[a.b]].status` → ['configurations', 'a.b', 'status']. */
function splitPath(path: string): string[] {
  const parts: string[] = [];
  const re = new RegExp(`(${NAME})|\\[\\[([^\\]]*)\\]\\]`, 'g');
  for (const m of path.matchAll(re)) parts.push(m[1] ?? m[2]);
  return parts;
}

function lookup(row: JsonObject, parts: readonly string[]): Json | undefined {
  let node: Json | undefined = row;
  for (const part of parts) {
    if (!isObject(node) || !Object.prototype.hasOwnProperty.call(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

function same(a: Json, b: Json): boolean {
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  return JSON.stringify(a) === JSON.stringify(b);
}

function compare(a: Json | undefined, op: string, b: Json): Truth {
  if (a === undefined) return undefined;
  switch (op) {
    case '=':
      return same(a, b);
    case '!=':
    case '<>':
      return !same(a, b);
  }
  if (typeof a !== typeof b || (typeof a !== 'number' && typeof a !== 'string')) return undefined;
  const x = a as number | string;
  const y = b as number | string;
  return op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
}

interface SelectItem {
  kind: 'path' | 'count';
  parts: string[];
  path: string;
  alias: string;
}

class Parser {
  private i = 0;
  private source: QuerySource = 'devices';

  constructor(private readonly tokens: Token[]) {}

  private peek(): Token | undefined {
    return this.tokens[this.i];
  }
  private word(w: string): boolean {
    const t = this.peek();
    return t?.kind === 'word' && t.text.toUpperCase() === w;
  }
  private expect(w: string): void {
    if (!this.word(w)) throw new HubError('BadRequest', `query: expected ${w}${this.peek() ? ` at '${this.peek()!.text}'` : ' at the end'}`);
    this.i++;
  }
  private expectText(text: string, what: string): void {
    if (this.tokens[this.i]?.text !== text) throw new HubError('BadRequest', `query: ${what}`);
    this.i++;
  }
  get done(): boolean {
    return this.i === this.tokens.length;
  }
  rest(): string {
    return this.tokens[this.i]?.text ?? '';
  }

  path(): string[] {
    const t = this.tokens[this.i++];
    if (t?.kind !== 'word') throw new HubError('BadRequest', `query: expected a property path${t ? ` at '${t.text}'` : ''}`);
    let parts = splitPath(t.text);
    // Over devices.jobs, IoT Hub writes paths as devices.jobs.<property>.
    if (this.source === 'devices.jobs' && parts[0] === 'devices' && parts[1] === 'jobs') parts = parts.slice(2);
    if (parts.length === 0) throw new HubError('BadRequest', `query: '${t.text}' is not a property path`);
    return parts;
  }

  literal(): Json {
    const lit = this.tokens[this.i++];
    if (lit?.kind === 'string') return lit.text;
    if (lit?.kind === 'number') return Number(lit.text);
    if (lit?.kind === 'word' && ['TRUE', 'FALSE', 'NULL'].includes(lit.text.toUpperCase())) {
      return lit.text.toUpperCase() === 'NULL' ? null : lit.text.toUpperCase() === 'TRUE';
    }
    throw new HubError('BadRequest', `query: '${lit?.text ?? 'the end'}' is not a value`);
  }

  list(): Json[] {
    this.expectText('[', 'IN takes a list in square brackets: IN [\'a\', \'b\']');
    const values: Json[] = [this.literal()];
    while (this.peek()?.kind === 'comma') {
      this.i++;
      values.push(this.literal());
    }
    this.expectText(']', 'missing ] after the IN list');
    return values;
  }

  primary(): Condition {
    if (this.word('NOT')) {
      this.i++;
      const inner = this.primary();
      return (r) => {
        const v = inner(r);
        return v === undefined ? undefined : !v;
      };
    }
    if (this.word('IS_DEFINED')) {
      this.i++;
      this.expectText('(', 'expected ( after IS_DEFINED');
      const parts = this.path();
      this.expectText(')', 'IS_DEFINED takes one property path');
      return (r) => lookup(r, parts) !== undefined;
    }
    if (this.peek()?.text === '(') {
      this.i++;
      const inner = this.or();
      this.expectText(')', 'missing )');
      return inner;
    }
    const parts = this.path();
    if (this.word('IN') || this.word('NOT')) {
      const negate = this.word('NOT');
      if (negate) {
        this.i++;
        if (!this.word('IN')) throw new HubError('BadRequest', 'query: expected IN after NOT');
      }
      this.i++;
      const values = this.list();
      return (r) => {
        const v = lookup(r, parts);
        if (v === undefined) return undefined;
        const found = values.some((x) => same(v, x));
        return negate ? !found : found;
      };
    }
    const op = this.tokens[this.i++];
    if (op?.kind !== 'op') throw new HubError('BadRequest', 'query: expected <property> <operator> <value>');
    const value = this.literal();
    return (r) => compare(lookup(r, parts), op.text, value);
  }

  and(): Condition {
    let left = this.primary();
    while (this.word('AND')) {
      this.i++;
      const l = left;
      const r = this.primary();
      left = (row) => {
        const a = l(row);
        if (a === false) return false;
        const b = r(row);
        if (b === false) return false;
        return a === undefined || b === undefined ? undefined : true;
      };
    }
    return left;
  }

  or(): Condition {
    let left = this.and();
    while (this.word('OR')) {
      this.i++;
      const l = left;
      const r = this.and();
      left = (row) => {
        const a = l(row);
        if (a === true) return true;
        const b = r(row);
        if (b === true) return true;
        return a === undefined || b === undefined ? undefined : false;
      };
    }
    return left;
  }

  condition(): TwinFilter {
    const c = this.or();
    return (row) => c(row) === true;
  }

  selectList(): SelectItem[] | '*' {
    if (this.peek()?.kind === 'star') {
      this.i++;
      return '*';
    }
    const items: SelectItem[] = [];
    for (;;) {
      let item: SelectItem;
      if (this.word('COUNT')) {
        this.i++;
        this.expectText('(', 'COUNT takes no argument: COUNT()');
        this.expectText(')', 'COUNT takes no argument: COUNT()');
        item = { kind: 'count', parts: [], path: 'COUNT()', alias: `$${items.length + 1}` };
      } else {
        const t = this.peek();
        const parts = this.path();
        item = { kind: 'path', parts, path: t!.text, alias: parts[parts.length - 1] };
      }
      if (this.word('AS')) {
        this.i++;
        const alias = this.tokens[this.i++];
        if (alias?.kind !== 'word' || alias.text.includes('.')) throw new HubError('BadRequest', 'query: AS takes a plain name');
        item.alias = alias.text;
      }
      items.push(item);
      if (this.peek()?.kind !== 'comma') return items;
      this.i++;
    }
  }

  query(): CompiledQuery {
    this.expect('SELECT');
    // The select list may use devices.jobs.* paths: read FROM first, then come back to it.
    const selectStart = this.i;
    while (!this.done && !this.word('FROM')) this.i++;
    this.expect('FROM');
    const from = this.tokens[this.i++];
    const name = from?.kind === 'word' ? from.text.toLowerCase() : '';
    if (name !== 'devices' && name !== 'devices.jobs') {
      throw new HubError('BadRequest', `query: the emulator supports FROM devices and FROM devices.jobs only${from ? `, not '${from.text}'` : ''}`);
    }
    this.source = name;
    const afterFrom = this.i;
    this.i = selectStart;
    const select = this.selectList();
    if (!this.word('FROM')) throw new HubError('BadRequest', `query: unexpected '${this.rest()}' in the select list`);
    this.i = afterFrom;

    let filter: TwinFilter = () => true;
    if (this.word('WHERE')) {
      this.i++;
      filter = this.condition();
    }
    let groupBy: string[] | undefined;
    if (this.word('GROUP')) {
      this.i++;
      this.expect('BY');
      groupBy = this.path();
    }
    if (!this.done) throw new HubError('BadRequest', `query: unexpected '${this.rest()}'`);
    return { source: this.source, selectsAll: select === '*', filter, shape: shaper(select, groupBy) };
  }
}

function shaper(select: SelectItem[] | '*', groupBy: string[] | undefined): (rows: JsonObject[]) => JsonObject[] {
  if (select === '*') {
    if (groupBy) throw new HubError('BadRequest', 'query: GROUP BY needs a select list (SELECT <property>, COUNT() ...)');
    return (rows) => rows;
  }
  const counts = select.some((s) => s.kind === 'count');
  const key = groupBy?.join('.');
  if (groupBy) {
    const stray = select.find((s) => s.kind === 'path' && s.parts.join('.') !== key);
    if (stray) throw new HubError('BadRequest', `query: '${stray.path}' is neither the GROUP BY property nor an aggregate`);
  } else if (counts && select.some((s) => s.kind === 'path')) {
    throw new HubError('BadRequest', 'query: a property next to COUNT() needs GROUP BY on that property');
  }
  const project = (row: JsonObject, count: number): JsonObject => {
    const out: JsonObject = {};
    for (const s of select) {
      if (s.kind === 'count') out[s.alias] = count;
      else {
        const v = lookup(row, s.parts);
        if (v !== undefined) out[s.alias] = v;
      }
    }
    return out;
  };
  if (groupBy) {
    return (rows) => {
      const groups = new Map<string, { row: JsonObject; count: number }>();
      for (const row of rows) {
        const k = JSON.stringify(lookup(row, groupBy) ?? null);
        const g = groups.get(k);
        if (g) g.count++;
        else groups.set(k, { row, count: 1 });
      }
      return [...groups.values()].map((g) => project(g.row, g.count));
    };
  }
  if (counts) return (rows) => [project({}, rows.length)];
  return (rows) => rows.map((r) => project(r, 0));
}

/** Compiles a full query (`SELECT ... FROM ...`). Throws 400 BadRequest naming what it did not understand. */
export function compileQuery(query: string): CompiledQuery {
  return new Parser(tokenize(query)).query();
}

/**
 * A condition alone, as jobs (`queryCondition`) and configurations (`targetCondition`) take it:
 * `tags.site = 'lab' AND properties.reported.x > 1`, or `deviceId IN ['a', 'b']`.
 */
export function parseCondition(condition: string, what = 'condition'): TwinFilter {
  const trimmed = condition.trim();
  if (trimmed === '*') return () => true;
  try {
    const parser = new Parser(tokenize(trimmed));
    const filter = parser.condition();
    if (!parser.done) throw new HubError('BadRequest', `query: unexpected '${parser.rest()}'`);
    return filter;
  } catch (err) {
    if (err instanceof HubError) throw new HubError('ArgumentInvalid', `${what}: ${err.message.replace(/^query: /, '')}`);
    throw err;
  }
}
