// A small asciicast v2 player on xterm.js: play, pause, speed. Output ("o") events are written at
// their recorded times (scaled by the speed); resize ("r") events resize the terminal.

export function parseCast(text) {
  const lines = text.split("\n").filter((line) => line.trim());
  if (!lines.length) throw new Error("empty recording");
  const header = JSON.parse(lines[0]);
  if (header.version !== 2) throw new Error(`unsupported asciicast version ${header.version}`);
  const events = [];
  for (const line of lines.slice(1)) {
    const event = JSON.parse(line);
    if (Array.isArray(event) && event.length >= 3 && typeof event[0] === "number") events.push(event);
  }
  return { header, events };
}

export class CastPlayer {
  constructor(term, cast, { onProgress = () => {}, onEnd = () => {} } = {}) {
    this.term = term;
    this.cast = cast;
    this.onProgress = onProgress;
    this.onEnd = onEnd;
    this.speed = 1;
    this.index = 0; // next event to show
    this.position = 0; // recording time reached, in seconds
    this.playing = false;
    this.timer = null;
    this.lastTick = 0;
    if (cast.header.width && cast.header.height) term.resize(cast.header.width, cast.header.height);
  }

  get duration() {
    const events = this.cast.events;
    return events.length ? events[events.length - 1][0] : 0;
  }

  play() {
    if (this.playing) return;
    if (this.index >= this.cast.events.length) this.restart();
    this.playing = true;
    this.lastTick = performance.now();
    this.timer = setInterval(() => this.tick(), 20);
  }

  pause() {
    this.playing = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  setSpeed(speed) {
    this.speed = speed > 0 ? speed : 1;
  }

  restart() {
    this.term.reset();
    this.index = 0;
    this.position = 0;
  }

  tick() {
    const now = performance.now();
    this.position += ((now - this.lastTick) / 1000) * this.speed;
    this.lastTick = now;
    const events = this.cast.events;
    while (this.index < events.length && events[this.index][0] <= this.position) {
      const [, type, data] = events[this.index++];
      if (type === "o") this.term.write(data);
      else if (type === "r") {
        const [cols, rows] = String(data).split("x").map(Number);
        if (cols > 0 && rows > 0) this.term.resize(cols, rows);
      }
    }
    this.onProgress(Math.min(this.position, this.duration), this.duration);
    if (this.index >= events.length) {
      this.pause();
      this.onEnd();
    }
  }
}
