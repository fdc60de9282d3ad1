// Shared by the benchmarks: the best wall-clock time of a few rounds (the least disturbed one).
export async function bestOf(rounds, fn) {
  let min = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = process.hrtime.bigint();
    await fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return min;
}
