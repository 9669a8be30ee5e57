// Retry delays, the shape AWS's programs use (protocol reference §2.9): the browser's copy of
// openssm/protocol/backoff.py, checked against it by tests/unit/console/test_js_channelcore.py.
// The first wait is drawn from [100, 200] ms, each next one twice as long, at most 5 s; with a
// `windowMs` the waits stop once the next would end past the window (the last one is cut to end
// exactly at it), so a caller gives up after a time, not after a count.

export const INITIAL_MIN_MS = 100;
export const INITIAL_MAX_MS = 200;
export const FACTOR = 2;
export const MAX_DELAY_MS = 5000;

/**
 * The waits between attempts, in milliseconds, in order.
 * @param {{windowMs?: number, attempts?: number, random?: () => number}} options
 *   windowMs bounds their sum, attempts their count (either, both or neither: then it never ends);
 *   random gives the first draw (default Math.random).
 */
export function* backoffDelays({ windowMs = null, attempts = null, random = Math.random } = {}) {
  let delay = INITIAL_MIN_MS + (INITIAL_MAX_MS - INITIAL_MIN_MS) * random();
  let spent = 0;
  let count = 0;
  while (attempts === null || count < attempts) {
    let step = Math.min(MAX_DELAY_MS, delay);
    if (windowMs !== null && spent + step > windowMs) {
      const remaining = windowMs - spent;
      if (remaining <= 0) return;
      step = remaining; // one last try at the very end of the window
    }
    yield step;
    spent += step;
    count += 1;
    delay = Math.min(MAX_DELAY_MS, delay * FACTOR);
  }
}
