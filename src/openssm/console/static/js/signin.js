// Sign-in: access key id + secret, then a password and an MFA code when the user has them; or
// "Sign in with <provider>" when the server is configured for it (--oidc-…).
import { showMessage } from "./common.js";

const form = document.getElementById("signin-form");
const message = document.getElementById("signin-message");
const value = (id) => document.getElementById(id).value;

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  // Only ever return to a console page on this origin.
  return next.startsWith("/console/") ? next : "/console/nodes";
}

function reveal(id) {
  document.getElementById(id).classList.remove("hidden");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("signin-button");
  button.disabled = true;
  message.replaceChildren();
  try {
    const response = await fetch("/console/api/signin", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({
        access_key_id: value("access-key-id"),
        secret_access_key: value("secret-access-key"),
        password: value("password"),
        mfa_code: value("mfa-code"),
      }),
    });
    if (response.ok) {
      location.assign(nextPage());
      return;
    }
    const body = await response.json().catch(() => ({}));
    // The server names the further factor it needs ("password" or "mfa").
    if (body.needs === "password") {
      reveal("password-row");
      document.getElementById("password").focus();
    } else if (body.needs === "mfa") {
      reveal("mfa-row");
      document.getElementById("mfa-code").focus();
    }
    const text = body.message || `Sign-in failed (${response.status}).`;
    showMessage(message, text, body.needs && !text.includes("not correct") ? "info" : "error");
  } catch (err) {
    showMessage(message, `Sign-in failed: ${err.message}`);
  }
  button.disabled = false;
});

// What the server offers besides access keys, and why a sign-in through the provider came back.
async function offerIdentityProvider() {
  const failed = new URLSearchParams(location.search).get("error");
  if (failed) showMessage(message, failed);
  try {
    const response = await fetch("/console/api/signin-options", { credentials: "same-origin" });
    const options = response.ok ? await response.json() : {};
    if (!options.oidc) return;
    const link = document.getElementById("oidc-signin");
    link.textContent = `Sign in with ${options.oidc.name}`;
    link.href = `${options.oidc.start}?${new URLSearchParams({ next: nextPage() })}`;
    reveal("oidc-row");
  } catch (err) {
    // Access keys still work; say nothing.
  }
}

offerIdentityProvider();
