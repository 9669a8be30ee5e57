// A real OpenID provider for the tests: the npm package oidc-provider (OpenID Certified), on
// loopback, with the clients and users the test passes as JSON in argv[2]:
//   { "clients": [<oidc-provider client metadata>], "users": { "<login>": { "password": …, <claims> } },
//     "idTokenTtl": seconds }
// Its own sign-in and consent pages check the user's password (no developer shortcut that takes any
// login). Keys: one RSA (RS256) and one EC P-256 (ES256) key, made at start. Prints one JSON line
// {"issuer": …} on stdout when it listens; stops on SIGTERM.
import { createServer } from "node:http";
import Provider from "oidc-provider";
import { generateKeyPairSync } from "node:crypto";

const config = JSON.parse(process.argv[2] || "{}");
const users = config.users || {};

const escape = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;background:#eef1f5}main{max-width:22rem;margin:4rem auto;background:#fff;padding:1.5rem 2rem;border-radius:8px;box-shadow:0 1px 4px #0003}
label{display:block;margin-top:.8rem}input{width:100%;box-sizing:border-box;padding:.4rem}button{margin-top:1rem;width:100%;padding:.5rem;background:#2456a6;color:#fff;border:0;border-radius:4px}
.error{color:#b00020}</style></head><body><main><h1>Test IdP</h1>${body}</main></body></html>`;
}

function loginPage(uid, clientId, error) {
  return page(
    "Sign in",
    `<p>Sign in to continue to <b>${escape(clientId)}</b>.</p>${error ? `<p class="error">${escape(error)}</p>` : ""}
<form method="post" action="/interaction/${escape(uid)}"><input type="hidden" name="prompt" value="login">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button id="sign-in" type="submit">Sign in</button></form>`,
  );
}

function consentPage(uid, clientId, scopes) {
  return page(
    "Allow access",
    `<p><b>${escape(clientId)}</b> asks for: ${escape(scopes.join(", ") || "openid")}.</p>
<form method="post" action="/interaction/${escape(uid)}"><input type="hidden" name="prompt" value="consent">
<button id="allow" type="submit">Allow</button></form>`,
  );
}

async function readForm(req) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16384) throw new Error("form too large");
  }
  return Object.fromEntries(new URLSearchParams(body));
}

function send(res, status, html) {
  res.writeHead(status, { "Content-Type": "text/html; charset=utf-8" });
  res.end(html);
}

async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session, grantId } = details;
  if (req.method === "GET") {
    if (prompt.name === "login") return send(res, 200, loginPage(uid, params.client_id));
    return send(res, 200, consentPage(uid, params.client_id, prompt.details.missingOIDCScope || []));
  }
  const form = await readForm(req);
  if (form.prompt === "login" && prompt.name === "login") {
    const user = users[form.username];
    if (!user || user.password !== form.password) {
      return send(res, 401, loginPage(uid, params.client_id, "Wrong username or password."));
    }
    return provider.interactionFinished(req, res, { login: { accountId: form.username } }, { mergeWithLastSubmission: false });
  }
  if (form.prompt === "consent" && prompt.name === "consent") {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const result = { consent: { grantId: await grant.save() } };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  }
  return send(res, 400, page("Error", "<p>Unexpected form.</p>"));
}

const server = createServer();
server.listen(0, "127.0.0.1", async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const jwks = {
    keys: [
      { ...rsa.export({ format: "jwk" }), kid: "rsa-1", alg: "RS256", use: "sig" },
      { ...ec.export({ format: "jwk" }), kid: "ec-1", alg: "ES256", use: "sig" },
    ],
  };
  const provider = new Provider(issuer, {
    clients: config.clients || [],
    jwks,
    findAccount: (ctx, id) =>
      users[id]
        ? {
            accountId: id,
            claims: () => {
              const { password, ...claims } = users[id];
              return { sub: id, ...claims };
            },
          }
        : undefined,
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["preferred_username", "name"] },
    conformIdTokenClaims: false, // the scopes' claims go into the ID token too
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    ttl: { IdToken: config.idTokenTtl || 3600, AccessToken: 3600, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
    cookies: { keys: ["openssm-test-cookie-key"] },
    renderError: (ctx, out) => {
      ctx.type = "html";
      ctx.body = page("Error", `<p class="error">${escape(out.error)}: ${escape(out.error_description || "")}</p>`);
    },
  });
  const handle = provider.callback();
  server.on("request", (req, res) => {
    if (req.url.startsWith("/interaction/")) {
      interaction(provider, req, res).catch((err) => send(res, 500, page("Error", escape(err.message))));
    } else {
      handle(req, res);
    }
  });
  process.stdout.write(JSON.stringify({ issuer }) + "\n");
});
// Stop at once: keep-alive connections from the browser would hold server.close() open.
process.on("SIGTERM", () => process.exit(0));
