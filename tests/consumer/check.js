'use strict';
// telkin reference consumer: the verification logic (Node.js standard library only; the CLI
// telkin-check.js and the Lambda handler lambda.js both use it).
//
// Feed it Kinesis record Data, in any order. Every line of Data that is a telkin event carries
// "sandbox" (the execution environment) and "seq" (1, 2, 3, ... per sandbox); (sandbox, seq) names
// one event exactly. Per sandbox it keeps which numbers arrived and which numbers telkin reported
// dropped ("telkin.dropped" records, record.seqRanges), as sorted ranges, so that a sandbox of
// millions of events with a few gaps costs a few ranges, not a set of every number.
//
//   delivered   numbers that arrived (the first copy; later copies are duplicates)
//   covered     numbers inside a telkin.dropped range that did not arrive (a number both
//               delivered and covered counts as delivered: coalesced ranges may cover those)
//   missing     numbers in 1..top (the highest number seen) neither delivered nor covered
//   unaccounted covered numbers beyond the exact droppedRecords telkin reported: a coalesced
//               range hid that many losses
//
// The tail cannot be checked: an event after the last one that arrived leaves no gap.

// A set of positive integers kept as sorted, disjoint, non-adjacent inclusive ranges [lo, hi].
// A number at or past the end extends or appends in O(1) (one shard read in order). One below the
// end waits in a small hash set and PENDING_MAX of them are merged in one linear pass (a sandbox
// spread over shards read one after the other), so that out-of-order input stays O(n log n).
const PENDING_MAX = 65536;

class RangeSet {
  constructor() {
    this._r = [];
    this.pending = new Set();
  }

  get ranges() {
    if (this.pending.size) this._flush();
    return this._r;
  }

  // Merges the pending numbers (none of them in a range) into the ranges, in one pass.
  _flush() {
    const nums = [...this.pending].sort((x, y) => x - y);
    this.pending.clear();
    const out = [];
    const push = (lo, hi) => {
      const last = out[out.length - 1];
      if (last && last[1] + 1 >= lo) last[1] = Math.max(last[1], hi); else out.push([lo, hi]);
    };
    let i = 0;
    for (const r of this._r) {
      while (i < nums.length && nums[i] < r[0]) { push(nums[i], nums[i]); i++; }
      push(r[0], r[1]);
    }
    for (; i < nums.length; i++) push(nums[i], nums[i]);
    this._r = out;
  }

  // Index of the first range whose hi >= n (ranges.length when there is none).
  _find(n) {
    const r = this.ranges;
    let a = 0;
    let b = r.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (r[m][1] < n) a = m + 1; else b = m;
    }
    return a;
  }

  has(n) { return this.pending.has(n) || this._inRanges(n); }

  size() {
    let n = 0;
    for (const [lo, hi] of this.ranges) n += hi - lo + 1;
    return n;
  }

  // Adds [lo, hi]; returns how many of its numbers were not in the set. O(1) when appending.
  addRange(lo, hi) {
    const r = this.ranges;
    const last = r[r.length - 1];
    if (!last || lo > last[1] + 1) { r.push([lo, hi]); return hi - lo + 1; }
    if (lo === last[1] + 1) { last[1] = hi; return hi - lo + 1; }
    const i = this._find(lo - 1);
    let j = i;
    let added = hi - lo + 1;
    let nlo = lo;
    let nhi = hi;
    for (; j < r.length && r[j][0] <= hi + 1; j++) {
      const ol = Math.max(r[j][0], lo);
      const oh = Math.min(r[j][1], hi);
      if (oh >= ol) added -= oh - ol + 1;
      nlo = Math.min(nlo, r[j][0]);
      nhi = Math.max(nhi, r[j][1]);
    }
    r.splice(i, j - i, [nlo, nhi]);
    return added;
  }

  add(n) {
    // Pending numbers are all below the last range's end: past it, n is new and goes in as is.
    const last = this._r[this._r.length - 1];
    if (!last || n > last[1] + 1) { this._r.push([n, n]); return true; }
    if (n === last[1] + 1) { last[1] = n; return true; }
    if (this.pending.has(n) || this._inRanges(n)) return false;
    this.pending.add(n);
    if (this.pending.size >= PENDING_MAX) this._flush();
    return true;
  }

  // Whether a range (not the pending numbers) holds n.
  _inRanges(n) {
    let a = 0;
    let b = this._r.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this._r[m][1] < n) a = m + 1; else b = m;
    }
    return a < this._r.length && this._r[a][0] <= n;
  }

  // Removes [lo, hi]; returns how many numbers were removed.
  removeRange(lo, hi) {
    const r = this.ranges;
    const i = this._find(lo);
    const keep = [];
    let removed = 0;
    let j = i;
    for (; j < r.length && r[j][0] <= hi; j++) {
      const [a, b] = r[j];
      removed += Math.min(b, hi) - Math.max(a, lo) + 1;
      if (a < lo) keep.push([a, lo - 1]);
      if (b > hi) keep.push([hi + 1, b]);
    }
    if (j > i) r.splice(i, j - i, ...keep);
    return removed;
  }

  // How many numbers of [lo, hi] the set holds.
  countWithin(lo, hi) {
    let n = 0;
    const r = this.ranges;
    for (let i = this._find(lo); i < r.length && r[i][0] <= hi; i++) n += Math.min(r[i][1], hi) - Math.max(r[i][0], lo) + 1;
    return n;
  }

  // The set's ranges clipped to [lo, hi].
  within(lo, hi) {
    const out = [];
    const r = this.ranges;
    for (let i = this._find(lo); i < r.length && r[i][0] <= hi; i++) out.push([Math.max(r[i][0], lo), Math.min(r[i][1], hi)]);
    return out;
  }
}

// How many numbers of [lo, hi] are in both sets.
function countBoth(a, b, lo, hi) {
  const x = a.within(lo, hi);
  const y = b.within(lo, hi);
  let n = 0;
  for (let i = 0, j = 0; i < x.length && j < y.length;) {
    const ol = Math.max(x[i][0], y[j][0]);
    const oh = Math.min(x[i][1], y[j][1]);
    if (oh >= ol) n += oh - ol + 1;
    if (x[i][1] < y[j][1]) i++; else j++;
  }
  return n;
}

// The ranges of [lo, hi] in neither set.
function gapsWithin(a, b, lo, hi) {
  const held = [...a.within(lo, hi), ...b.within(lo, hi)].sort((p, q) => p[0] - q[0]);
  const gaps = [];
  let next = lo;
  for (const [s, e] of held) {
    if (s > next) gaps.push([next, s - 1]);
    if (e + 1 > next) next = e + 1;
  }
  if (next <= hi) gaps.push([next, hi]);
  return gaps;
}

const sumRanges = (ranges) => ranges.reduce((n, [lo, hi]) => n + (hi - lo + 1), 0);
const isSeq = (n) => Number.isSafeInteger(n) && n >= 1;

// What telkin says of one sandbox, as it arrives.
class SandboxState {
  constructor(sandbox) {
    this.sandbox = sandbox;
    this.function = undefined;
    this.events = 0; // unique events (the first copy of each number), late ones included
    this.duplicates = 0; // further copies, dropped
    this.late = 0; // events that arrived after their number was settled as missing
    this.maxSeq = 0;
    this.maxCovered = 0;
    this.lowest = Infinity; // the lowest number delivered or covered
    this.delivered = new RangeSet();
    this.covered = new RangeSet();
    this.reportedDropped = 0; // sum of droppedRecords of the unique telkin.dropped records
    this.droppedReports = 0; // how many unique telkin.dropped records
    this.badRanges = 0; // seqRanges entries that are not [lo, hi] with 1 <= lo <= hi
    // Numbers <= settledThrough are decided (settle()): their ranges left delivered/covered, the
    // missing ones moved to settledMissing, the covered ones counted in settledCovered.
    this.settledThrough = 0;
    this.settledMissing = new RangeSet();
    this.settledCovered = 0;
    this.lateCovered = 0; // of those, numbers settled missing before a report covered them
    this.lastSeen = 0; // Date.now() at the last event (for the Lambda's idle eviction)
  }

  // The highest number this sandbox has spoken of.
  get top() { return Math.max(this.maxSeq, this.maxCovered); }

  // One event of this sandbox: 'new', 'duplicate', or 'late' (its number was settled missing).
  accept(seq, ev) {
    this.lastSeen = Date.now();
    let outcome = 'new';
    if (seq <= this.settledThrough) {
      if (!this.settledMissing.removeRange(seq, seq)) { this.duplicates++; return 'duplicate'; }
      this.late++;
      outcome = 'late';
    } else if (!this.delivered.add(seq)) {
      this.duplicates++;
      return 'duplicate';
    }
    this.events++;
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (seq < this.lowest) this.lowest = seq;
    if (typeof ev.function === 'string') this.function = ev.function;
    if (ev.type === 'telkin.dropped') this._dropped(ev.record);
    return outcome;
  }

  _dropped(rec) {
    if (!rec || typeof rec !== 'object') return;
    this.droppedReports++;
    if (Number.isSafeInteger(rec.droppedRecords) && rec.droppedRecords > 0) this.reportedDropped += rec.droppedRecords;
    for (const r of Array.isArray(rec.seqRanges) ? rec.seqRanges : []) {
      if (!Array.isArray(r) || r.length !== 2 || !isSeq(r[0]) || !isSeq(r[1]) || r[0] > r[1]) {
        this.badRanges++;
        continue;
      }
      const [lo, hi] = r;
      if (hi > this.maxCovered) this.maxCovered = hi;
      if (lo < this.lowest) this.lowest = lo;
      if (lo <= this.settledThrough) {
        // A report of numbers already settled as missing: they were dropped after all.
        const late = this.settledMissing.removeRange(lo, Math.min(hi, this.settledThrough));
        this.settledCovered += late;
        this.lateCovered += late;
      }
      if (hi > this.settledThrough) this.covered.addRange(Math.max(lo, this.settledThrough + 1), hi);
    }
  }

  // Decides every number up to `through` (at most top): what is neither delivered nor covered by
  // then is missing. Keeps only the missing ranges of that part. Returns the newly missing count.
  settle(through) {
    const hi = Math.min(through, this.top);
    const lo = this.settledThrough + 1;
    if (hi < lo) return 0;
    const gaps = gapsWithin(this.delivered, this.covered, lo, hi);
    for (const [a, b] of gaps) this.settledMissing.addRange(a, b);
    this.settledCovered += this.covered.countWithin(lo, hi) - countBoth(this.covered, this.delivered, lo, hi);
    this.delivered.removeRange(1, hi);
    this.covered.removeRange(1, hi);
    this.settledThrough = hi;
    return sumRanges(gaps);
  }

  // Covered numbers beyond telkin's exact count (with settled numbers only when settledOnly).
  unaccounted(settledOnly = false) {
    return Math.max(0, this.coveredCount(settledOnly) - this.reportedDropped);
  }

  coveredCount(settledOnly = false) {
    if (settledOnly) return this.settledCovered;
    const lo = this.settledThrough + 1;
    const hi = this.top;
    if (hi < lo) return this.settledCovered;
    return this.settledCovered + this.covered.countWithin(lo, hi) - countBoth(this.covered, this.delivered, lo, hi);
  }

  // Everything known now, the open part included (nothing is settled by this). fromLowest: the
  // numbers below the lowest one seen are not counted (records past the stream's retention).
  summary({ maxRanges = 100, fromLowest = false } = {}) {
    const lo = Math.max(this.settledThrough + 1, fromLowest && this.lowest !== Infinity ? this.lowest : 1);
    const open = this.top >= lo ? gapsWithin(this.delivered, this.covered, lo, this.top) : [];
    const missingRanges = [...this.settledMissing.ranges, ...open];
    const missing = sumRanges(missingRanges);
    const covered = this.coveredCount(false);
    const unaccounted = Math.max(0, covered - this.reportedDropped);
    let verdict = 'complete';
    if (missing + unaccounted > 0) verdict = 'GAPS';
    else if (covered > 0) verdict = `complete, ${covered} reported dropped`;
    return {
      sandbox: this.sandbox,
      function: this.function,
      events: this.events,
      duplicates: this.duplicates,
      lowest: this.lowest === Infinity ? 0 : this.lowest,
      maxSeq: this.top,
      missing,
      covered,
      unaccounted,
      reportedDropped: this.reportedDropped,
      droppedReports: this.droppedReports,
      late: this.late,
      badRanges: this.badRanges,
      missingRanges: missingRanges.slice(0, maxRanges).map(([a, b]) => [a, b]),
      missingRangeCount: missingRanges.length,
      verdict,
    };
  }
}

// All sandboxes of a stream (or of one shard's batches, in the Lambda). startAtFirstSeen: a
// sandbox is checked from the first number that arrives (a consumer that starts mid-stream, in
// order), not from 1: the numbers below it are taken as settled, and a later copy of one of them
// counts as a duplicate.
class Checker {
  constructor({ startAtFirstSeen = false } = {}) {
    this.startAtFirstSeen = startAtFirstSeen;
    this.sandboxes = new Map();
    this.records = 0; // Kinesis records fed
    this.foreign = 0; // lines that are not telkin events (not JSON, or no sandbox/seq)
  }

  // One Kinesis record's Data (Buffer or string): one event, or events separated by '\n', with or
  // without a trailing '\n'; blank lines are skipped. Returns one result per line (addEvent's).
  addData(data) {
    this.records++;
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : String(data);
    const out = [];
    for (const raw of text.split('\n')) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line.trim() === '') continue;
      let ev;
      try { ev = JSON.parse(line); } catch { ev = undefined; }
      out.push(this.addEvent(ev));
    }
    return out;
  }

  // One parsed event: {outcome: 'new'|'duplicate'|'late'|'foreign', state}.
  addEvent(ev) {
    if (!ev || typeof ev !== 'object' || Array.isArray(ev) || typeof ev.sandbox !== 'string' ||
        ev.sandbox === '' || !isSeq(ev.seq)) {
      this.foreign++;
      return { outcome: 'foreign', state: null };
    }
    let state = this.sandboxes.get(ev.sandbox);
    if (!state) {
      state = new SandboxState(ev.sandbox);
      if (this.startAtFirstSeen) state.settledThrough = ev.seq - 1;
      this.sandboxes.set(ev.sandbox, state);
    }
    return { outcome: state.accept(ev.seq, ev), state };
  }

  // Per sandbox summaries (ordered by function, then sandbox) and the stream's verdict.
  report(opts) {
    const sandboxes = [...this.sandboxes.values()].map((s) => s.summary(opts))
      .sort((a, b) => String(a.function).localeCompare(String(b.function)) || a.sandbox.localeCompare(b.sandbox));
    const total = (k) => sandboxes.reduce((n, s) => n + s[k], 0);
    const totals = {
      events: total('events'), duplicates: total('duplicates'), missing: total('missing'),
      covered: total('covered'), unaccounted: total('unaccounted'),
    };
    let verdict = 'complete';
    if (sandboxes.length === 0) verdict = 'no telkin events';
    else if (sandboxes.some((s) => s.verdict === 'GAPS')) verdict = 'GAPS';
    else if (totals.covered > 0) verdict = `complete, ${totals.covered} reported dropped`;
    return { records: this.records, foreign: this.foreign, sandboxes, totals, verdict };
  }
}

module.exports = { Checker, SandboxState, RangeSet, gapsWithin, countBoth };
