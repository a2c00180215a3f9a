// Light and dark themes. The page follows the system's `prefers-color-scheme`
// until the person picks one with the toggle; the pick is remembered in
// localStorage. The theme is the `data-theme` attribute of `<html>`, which
// selects a set of CSS variables in `layout.css`.

export type Theme = "light" | "dark";

const KEY = "firepit.theme";
const system = window.matchMedia("(prefers-color-scheme: light)");
const listeners: ((t: Theme) => void)[] = [];

/** The theme picked with the toggle, or null while the system's is followed. */
export function pickedTheme(): Theme | null {
  const v = localStorage.getItem(KEY);
  return v === "light" || v === "dark" ? v : null;
}

/** The theme in effect. */
export function theme(): Theme {
  return pickedTheme() ?? (system.matches ? "light" : "dark");
}

/** Picks a theme (remembered), or goes back to the system's with null. */
export function setTheme(t: Theme | null): void {
  if (t) localStorage.setItem(KEY, t);
  else localStorage.removeItem(KEY);
  apply();
}

/** Switches between light and dark, and remembers the pick. */
export function toggleTheme(): void {
  setTheme(theme() === "dark" ? "light" : "dark");
}

/** Called with the theme whenever it changes. */
export function onThemeChange(f: (t: Theme) => void): void {
  listeners.push(f);
}

function apply(): void {
  const t = theme();
  document.documentElement.dataset.theme = t;
  for (const f of listeners) f(t);
}

system.addEventListener("change", () => {
  if (!pickedTheme()) apply();
});
// Another tab picked a theme.
window.addEventListener("storage", (e) => {
  if (e.key === KEY) apply();
});
apply();
