// Replay of a recorded shell session (the server's asciicast v2 file) in the browser.
import { Terminal } from "../vendor/xterm.mjs";
import { startPage, showMessage } from "./common.js";
import { CastPlayer, parseCast } from "./player.js";

const sessionId = new URLSearchParams(location.search).get("session") || "";
const message = document.getElementById("replay-message");

async function main() {
  startPage("sessions");
  document.getElementById("replay-title").textContent = `Replay of ${sessionId}`;
  const response = await fetch(`/console/api/sessions/${encodeURIComponent(sessionId)}/recording`, { credentials: "same-origin" });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    showMessage(message, body.message || `Could not load the recording (${response.status}).`);
    return;
  }
  let cast;
  try {
    cast = parseCast(await response.text());
  } catch (err) {
    showMessage(message, `The recording cannot be read: ${err.message}`);
    return;
  }
  const term = new Terminal({ fontSize: 14, disableStdin: true, scrollback: 5000 });
  term.open(document.getElementById("player"));
  const position = document.getElementById("replay-position");
  const player = new CastPlayer(term, cast, {
    onProgress: (at, total) => {
      position.textContent = `${at.toFixed(1)} s / ${total.toFixed(1)} s`;
    },
    onEnd: () => {
      document.body.dataset.replayEnded = "true";
    },
  });
  position.textContent = `0.0 s / ${player.duration.toFixed(1)} s`;
  const speed = document.getElementById("replay-speed");
  speed.addEventListener("change", () => player.setSpeed(Number(speed.value)));
  document.getElementById("replay-play").addEventListener("click", () => {
    delete document.body.dataset.replayEnded;
    player.setSpeed(Number(speed.value));
    player.play();
  });
  document.getElementById("replay-pause").addEventListener("click", () => player.pause());
  // Enabled only now that the recording is loaded and the buttons do something.
  document.getElementById("replay-play").disabled = false;
  document.getElementById("replay-pause").disabled = false;
}

main();
