// Activations: create one and copy the agent's register command; list the existing ones.
import { cell, el, formatTime, getJson, postJson, rowsOrEmpty, showMessage, startPage } from "./common.js";

const message = document.getElementById("activations-message");

async function refresh() {
  try {
    const { activations } = await getJson("/console/api/activations");
    document.getElementById("activations-body").replaceChildren(
      ...rowsOrEmpty(activations.map((a) =>
        el(
          "tr",
          {},
          cell("Activation", el("code", { text: a.ActivationId }), a.Description ? el("div", { class: "muted", text: a.Description }) : null),
          cell("Role", a.IamRole),
          cell("Name", a.DefaultInstanceName || "—"),
          cell("Registrations", `${a.RegistrationsCount} of ${a.RegistrationLimit}`),
          cell("Expires", `${formatTime(a.ExpirationDate)}${a.Expired ? " (expired)" : ""}`),
        ),
      ), 5, "No activations."),
    );
  } catch (err) {
    showMessage(message, err.denied ? `You are not allowed to list activations. ${err.message}` : err.message);
  }
}

document.getElementById("activation-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  message.replaceChildren();
  try {
    const created = await postJson("/console/api/activations", {
      iam_role: document.getElementById("activation-role").value,
      default_instance_name: document.getElementById("activation-name").value,
      description: document.getElementById("activation-description").value,
      registration_limit: Number(document.getElementById("activation-limit").value) || 1,
    });
    document.getElementById("activation-id").textContent = created.ActivationId;
    document.getElementById("activation-command").textContent = created.InstallCommand;
    document.getElementById("activation-result").classList.remove("hidden");
    refresh();
  } catch (err) {
    showMessage(message, err.denied ? `You are not allowed to create activations. ${err.message}` : err.message);
  }
});

document.getElementById("activation-copy").addEventListener("click", async () => {
  const text = document.getElementById("activation-command").textContent;
  const note = document.getElementById("activation-copied");
  try {
    await navigator.clipboard.writeText(text);
    note.textContent = "Copied.";
  } catch (err) {
    // Clipboard access needs a secure context; select the text so the user can copy it.
    const range = document.createRange();
    range.selectNodeContents(document.getElementById("activation-command"));
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    note.textContent = "Selected: press Ctrl+C to copy.";
  }
});

startPage("activations");
await refresh();
