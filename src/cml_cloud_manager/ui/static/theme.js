// Light, dark, or whatever the system prefers; an explicit choice is remembered in localStorage.
const KEY = "cml-theme";
const ORDER = ["system", "light", "dark"];
const LABEL = { system: "Theme: system", light: "Theme: light", dark: "Theme: dark" };
const ICON = { system: "◐", light: "☀", dark: "☾" };

function stored() {
  try {
    return ORDER.includes(localStorage.getItem(KEY)) ? localStorage.getItem(KEY) : "system";
  } catch {
    return "system"; // storage can be disabled; the system preference still applies
  }
}

function apply(choice) {
  if (choice === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
}

export function initTheme(button) {
  let choice = stored();
  apply(choice);
  const render = () => {
    button.textContent = ICON[choice];
    button.setAttribute("aria-label", `${LABEL[choice]} (change)`);
    button.title = LABEL[choice];
  };
  render();
  button.addEventListener("click", () => {
    choice = ORDER[(ORDER.indexOf(choice) + 1) % ORDER.length];
    try {
      if (choice === "system") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, choice);
    } catch {
      // not remembered, still applied
    }
    apply(choice);
    render();
  });
}
