// Sessions: the active ones (terminate where allowed) and the history (owner, target, document,
// start/end, reason, where the log went) with a link to replay recorded shells.
import { actionButton, cell, el, formatTime, getJson, postJson, rowsOrEmpty, showMessage, startPage } from "./common.js";

const REFRESH_MS = 3000;
const message = document.getElementById("sessions-message");

function owner(session) {
  return el("span", { title: session.Owner, text: session.OwnerName || session.Owner });
}

// A row of either table: which session, whose, on what node, which document, then the table's own cells.
function sessionRow(session, ...cells) {
  return el(
    "tr",
    { "data-session-id": session.SessionId },
    cell("Session", el("code", { text: session.SessionId })),
    cell("Owner", owner(session)),
    cell("Target", session.Target),
    cell("Document", session.DocumentName),
    ...cells,
  );
}

function activeRow(session) {
  const terminate = session.CanTerminate
    ? actionButton(
        { class: "danger terminate", "data-session-id": session.SessionId, text: "Terminate" },
        message,
        async () => {
          await postJson(`/console/api/sessions/${encodeURIComponent(session.SessionId)}/terminate`);
          return `Asked to terminate ${session.SessionId}.`;
        },
        refresh,
      )
    : null;
  return sessionRow(
    session,
    cell("Started", formatTime(session.StartDate)),
    cell("Status", session.Status),
    cell("", el("div", { class: "row-actions" }, ...joinButtons(session), terminate)),
  );
}

// Live-session join: Watch (read-only) and Join (read-write) open the shell page on the session;
// its owner may refuse joins (which also ends the joiners already in it) or allow them again.
function joinButtons(session) {
  const id = encodeURIComponent(session.SessionId);
  const buttons = [];
  if (session.CanWatch) {
    buttons.push(el("a", { class: "button secondary watch", href: `/console/shell?join=${id}&mode=watch`, text: "Watch" }));
  }
  if (session.CanJoin) {
    buttons.push(el("a", { class: "button secondary join", href: `/console/shell?join=${id}&mode=type`, text: "Join" }));
  }
  if (session.Mine) {
    const allow = session.JoinsRefused;
    buttons.push(
      actionButton(
        { class: "secondary join-policy", text: allow ? "Allow joins" : "Refuse joins" },
        message,
        async () => {
          await postJson(`/console/api/sessions/${id}/join-policy`, { allow });
          return `Joins of ${session.SessionId} ${allow ? "allowed" : "refused"}.`;
        },
        refresh,
      ),
    );
  }
  return buttons;
}

function logCell(session) {
  const places = [];
  if (session.Recording) places.push(el("div", { text: `Server: ${session.Recording}` }));
  const output = session.OutputUrl || {};
  if (output.S3OutputUrl) places.push(el("div", { text: `S3: ${output.S3OutputUrl}` }));
  if (output.CloudWatchOutputUrl) places.push(el("div", { text: `CloudWatch: ${output.CloudWatchOutputUrl}` }));
  return places.length ? places : [el("span", { class: "muted", text: "not recorded" })];
}

function historyRow(session) {
  const replay = session.Replayable
    ? el("a", { class: "button secondary replay", href: `/console/replay?session=${encodeURIComponent(session.SessionId)}`, text: "Replay" })
    : null;
  return sessionRow(
    session,
    cell("Start", formatTime(session.StartDate)),
    cell("End", formatTime(session.EndDate)),
    cell("Reason", session.TerminationReason || session.Details || session.Status),
    cell("Log", logCell(session)),
    cell("", replay),
  );
}

async function refresh() {
  try {
    const [active, history] = await Promise.all([getJson("/console/api/sessions?state=Active"), getJson("/console/api/sessions?state=History")]);
    document.getElementById("active-body").replaceChildren(...rowsOrEmpty(active.sessions.map(activeRow), 7, "No active sessions."));
    document.getElementById("history-body").replaceChildren(...rowsOrEmpty(history.sessions.map(historyRow), 9, "No finished sessions yet."));
  } catch (err) {
    document.getElementById("active-body").replaceChildren();
    document.getElementById("history-body").replaceChildren();
    showMessage(message, err.denied ? `You are not allowed to list sessions. ${err.message}` : err.message);
  }
}

startPage("sessions");
await refresh();
setInterval(refresh, REFRESH_MS);
