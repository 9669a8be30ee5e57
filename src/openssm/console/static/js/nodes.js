// Managed nodes: live ping status, platform, agent, IP, tags, last seen; filter, search, Start session.
import { cell, el, formatTime, getJson, rowsOrEmpty, showMessage, startPage } from "./common.js";

const REFRESH_MS = 5000;
const body = document.getElementById("nodes-body");
const message = document.getElementById("nodes-message");
const search = document.getElementById("node-search");
const statusFilter = document.getElementById("node-status");
let nodes = [];

function tagText(tags) {
  return Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(" ");
}

function matches(node) {
  if (statusFilter.value && node.PingStatus !== statusFilter.value) return false;
  const needle = search.value.trim().toLowerCase();
  if (!needle) return true;
  const haystack = [node.InstanceId, node.Name, node.ComputerName, node.IPAddress, node.PlatformName, node.PlatformType, node.AgentVersion, tagText(node.Tags)]
    .join(" ")
    .toLowerCase();
  return haystack.includes(needle);
}

function row(node) {
  const online = node.PingStatus === "Online";
  const tags = node.Tags === null ? el("span", { class: "muted", text: "not permitted" }) : Object.entries(node.Tags).map(([k, v]) => el("span", { class: "tag", text: `${k}=${v}` }));
  let action = null;
  if (node.CanStartSession) {
    action = online
      ? el("a", { class: "button start-session", href: `/console/shell?target=${encodeURIComponent(node.InstanceId)}`, "data-target": node.InstanceId, text: "Start session" })
      : el("span", { class: "muted", text: "Not connected" });
  }
  return el(
    "tr",
    { "data-instance-id": node.InstanceId },
    cell("Node", el("strong", { text: node.Name || node.ComputerName || node.InstanceId }), el("br"), el("code", { text: node.InstanceId })),
    cell("Ping status", el("span", { class: online ? "status-online ping" : "status-offline ping", text: node.PingStatus })),
    cell("Platform", `${node.PlatformName || node.PlatformType || "—"} ${node.PlatformVersion || ""}`),
    cell("Agent", node.AgentVersion || "—"),
    cell("IP address", node.IPAddress || "—"),
    cell("Tags", tags),
    cell("Last seen", formatTime(node.LastPingDateTime)),
    cell("", action),
  );
}

function render() {
  const shown = nodes.filter(matches);
  body.replaceChildren(...rowsOrEmpty(shown.map(row), 8, nodes.length ? "No node matches." : "No managed nodes."));
  document.getElementById("node-count").textContent = `${shown.length} of ${nodes.length} nodes`;
}

async function refresh() {
  try {
    nodes = (await getJson("/console/api/nodes")).nodes;
    message.replaceChildren();
    render();
  } catch (err) {
    nodes = [];
    render();
    showMessage(message, err.denied ? `You are not allowed to list managed nodes. ${err.message}` : err.message);
  }
}

search.addEventListener("input", render);
statusFilter.addEventListener("change", render);
startPage("nodes");
await refresh();
setInterval(refresh, REFRESH_MS);
