// Shared by every console page: the JSON API (with the CSRF token), the header, small DOM helpers.

// Who is signed in and the session's CSRF token: the server writes /console/api/me's answer into
// every signed-in page (a meta element), so no request has to wait for it.
const meElement = document.querySelector('meta[name="openssm-me"]');
const me = meElement ? JSON.parse(meElement.content) : null;

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  get denied() {
    return this.status === 403 && (this.code === "AccessDeniedException" || this.code === "AccessDenied");
  }
}

async function parse(response) {
  let body = {};
  try {
    body = await response.json();
  } catch (err) {
    body = { error: "BadResponse", message: `The server answered ${response.status}.` };
  }
  if (response.status === 401 && body.error === "NotSignedIn") {
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(`/console/signin?next=${next}`);
    throw new ApiFailure(401, body.error, body.message);
  }
  if (!response.ok) throw new ApiFailure(response.status, body.error || "Error", body.message || response.statusText);
  return body;
}

export async function getJson(path) {
  return parse(await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }));
}

export async function postJson(path, body = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (me) headers["X-CSRF-Token"] = me.csrf_token;
  return parse(await fetch(path, { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body) }));
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The rows of a list, or one row saying it is empty (so an empty list is visibly empty). */
export function rowsOrEmpty(rows, columns, text) {
  return rows.length ? rows : [el("tr", { class: "empty-row" }, el("td", { class: "empty", colspan: String(columns), text }))];
}

/** A table cell; `label` heads it where narrow screens stack a row's cells. */
export function cell(label, ...content) {
  return el("td", { "data-label": label }, ...content);
}

/** A button that runs `action` (a POST) once: what it answers (a sentence) or its error is shown in
 * `container`, then `after` runs (a refresh of the page's lists). */
export function actionButton(attributes, container, action, after) {
  return el("button", {
    type: "button",
    ...attributes,
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        showMessage(container, await action(), "info");
      } catch (err) {
        showMessage(container, err.message);
      }
      after();
    },
  });
}

export function formatTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "—";
  const date = new Date(epochSeconds * 1000);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function showMessage(container, text, kind = "error") {
  container.replaceChildren(el("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status", text }));
}

const PAGES = [
  ["nodes", "Nodes"],
  ["sessions", "Sessions"],
  ["access", "Access requests"],
  ["activations", "Activations"],
];

/** Draw the header (who is signed in, from the page); `active` names this page. */
export function startPage(active) {
  const nav = el(
    "nav",
    { class: "nav", "aria-label": "Console" },
    PAGES.map(([page, label]) =>
      el("a", { href: `/console/${page}`, class: page === active ? "active" : null, "aria-current": page === active ? "page" : null, text: label }),
    ),
  );
  const signOut = el("button", { type: "button", class: "link", id: "sign-out", text: "Sign out" });
  signOut.addEventListener("click", async () => {
    await postJson("/console/api/signout");
    location.assign("/console/signin");
  });
  const header = el(
    "header",
    { class: "top" },
    el("a", { class: "brand", href: "/console/nodes", text: "OpenSSM" }),
    nav,
    el("div", { class: "who" }, el("span", { class: "user", title: me.arn, text: me.user }), signOut),
  );
  document.body.prepend(header);
  return me;
}
