// Access requests: ask for just-in-time access to a node; approvers approve or deny what waits for a
// decision (never their own); running grants can be revoked. Buttons show where the signed-in user's
// policies allow the action; the server authorises (and audits) each action itself.
import { actionButton, cell, el, formatTime, getJson, postJson, rowsOrEmpty, showMessage, startPage } from "./common.js";

const REFRESH_MS = 5000;
const SHELL_DOCUMENT = "SSM-SessionManagerRunShell";
const message = document.getElementById("access-message");

function duration(seconds) {
  if (seconds % 3600 === 0) return `${seconds / 3600}\u00a0h`;
  if (seconds % 60 === 0) return `${seconds / 60}\u00a0min`;
  return `${seconds}\u00a0s`;
}

function requester(request) {
  return el("span", { title: request.RequesterArn, text: request.Requester });
}

function decisionButton(request, decision, label, kind) {
  return actionButton(
    { class: `${kind} ${decision}`, text: label },
    message,
    async () => {
      const { AccessRequest: done } = await postJson(`/console/api/access-requests/${encodeURIComponent(request.AccessRequestId)}/${decision}`);
      return `${done.AccessRequestId} is ${done.Status.toLowerCase()}.`;
    },
    refresh,
  );
}

// A row of either table: which request, whose, on what target with which document and for how long,
// then the table's own cells (attributes: the row's own, besides its request id).
function accessRow(request, attributes, ...cells) {
  return el(
    "tr",
    { "data-request-id": request.AccessRequestId, ...attributes },
    cell("Request", el("code", { text: request.AccessRequestId })),
    cell("Requester", requester(request)),
    cell("Target", request.Target),
    cell("Document", request.DocumentName),
    cell("For", duration(request.DurationSeconds)),
    ...cells,
  );
}

function pendingRow(request) {
  const actions = [];
  if (request.CanApprove) actions.push(decisionButton(request, "approve", "Approve", ""));
  if (request.CanDeny) actions.push(decisionButton(request, "deny", "Deny", "danger"));
  if (!actions.length) actions.push(el("span", { class: "muted", text: request.Own ? "yours: someone else decides" : "not yours to decide" }));
  return accessRow(
    request,
    {},
    cell("Reason", request.Reason),
    cell("Asked", formatTime(request.CreatedDate)),
    cell("", actions),
  );
}

function until(request) {
  if (request.Status === "Approved") return formatTime(request.ExpirationDate);
  if (request.Status === "Pending") return `decide by ${formatTime(request.PendingUntil)}`;
  return request.EndedDate ? `ended ${formatTime(request.EndedDate)}` : "—";
}

function requestRow(request) {
  const actions = [];
  if (request.Own && request.Status === "Approved" && request.DocumentName === SHELL_DOCUMENT) {
    actions.push(el("a", { class: "button secondary open-shell", href: `/console/shell?target=${encodeURIComponent(request.Target)}`, text: "Open shell" }));
  }
  if (request.CanRevoke) actions.push(decisionButton(request, "revoke", request.Status === "Pending" ? "Withdraw" : "Revoke", "danger"));
  const decided = request.Decider ? `${request.Status === "Denied" ? "denied" : "approved"} by ${request.Decider}` : null;
  return accessRow(
    request,
    { class: `status-${request.Status.toLowerCase()}` },
    cell("Status", el("span", { class: "status", text: request.Status }), decided ? el("div", { class: "muted", text: decided }) : null),
    cell("Until", until(request)),
    cell("Reason", request.Reason, request.EndReason ? el("div", { class: "muted", text: request.EndReason }) : null),
    cell("", actions),
  );
}

async function refresh() {
  try {
    const { requests, scope } = await getJson("/console/api/access-requests");
    const pending = requests.filter((r) => r.Status === "Pending");
    document.getElementById("pending-body").replaceChildren(...rowsOrEmpty(pending.map(pendingRow), 8, "Nothing is waiting for a decision."));
    document.getElementById("requests-title").textContent = scope === "all" ? "All requests" : "Your requests";
    document.getElementById("requests-body").replaceChildren(...rowsOrEmpty(requests.map(requestRow), 9, "No access requests yet."));
  } catch (err) {
    showMessage(message, err.denied ? `You are not allowed to list access requests. ${err.message}` : err.message);
  }
}

async function loadTargets() {
  try {
    const { nodes } = await getJson("/console/api/nodes");
    document.getElementById("request-targets").replaceChildren(
      ...nodes.map((node) => el("option", { value: node.InstanceId, text: node.Name || node.ComputerName || node.InstanceId })),
    );
  } catch (err) {
    // Nodes one may not list can still be typed in.
  }
}

document.getElementById("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  message.replaceChildren();
  try {
    const { AccessRequest: created } = await postJson("/console/api/access-requests", {
      target: document.getElementById("request-target").value.trim(),
      document_name: document.getElementById("request-document").value.trim(),
      duration_seconds: Number(document.getElementById("request-duration").value),
      reason: document.getElementById("request-reason").value,
    });
    showMessage(message, `Requested: ${created.AccessRequestId} waits for an approver.`, "info");
    document.getElementById("request-reason").value = "";
  } catch (err) {
    showMessage(message, err.denied ? `You are not allowed to request access to that node. ${err.message}` : err.message);
  }
  refresh();
});

startPage("access");
await Promise.all([refresh(), loadTargets()]);
setInterval(refresh, REFRESH_MS);
