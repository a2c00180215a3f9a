// The terminal's colours for the page's theme (`theme.ts`): xterm.js paints
// its own background and ANSI palette, so the CSS variables of the light
// theme do not reach it. Every open terminal takes the new colours when the
// theme changes (`followTheme`), and a new one starts with the theme in
// effect.

import type { ITheme, Terminal } from "@xterm/xterm";
import { onThemeChange, type Theme, theme } from "./theme";

/** The dark palette: the page's `--bg` and `--text`. */
const DARK: ITheme = {
  background: "#0d1117",
  foreground: "#d6dde6",
  cursor: "#f97316",
  cursorAccent: "#0d1117",
  selectionBackground: "#264f78",
};

/**
 * The light palette: the page's light `--bg` and `--text`, and ANSI colours
 * dark enough to read on white (xterm's defaults for white and bright
 * yellow would vanish there).
 */
const LIGHT: ITheme = {
  background: "#ffffff",
  foreground: "#1f2328",
  cursor: "#ea580c",
  cursorAccent: "#ffffff",
  selectionBackground: "#b6d7ff",
  black: "#24292f",
  red: "#cf222e",
  green: "#116329",
  yellow: "#7d4e00",
  blue: "#0969da",
  magenta: "#8250df",
  cyan: "#1b7c83",
  white: "#6e7781",
  brightBlack: "#57606a",
  brightRed: "#a40e26",
  brightGreen: "#1a7f37",
  brightYellow: "#633c01",
  brightBlue: "#218bff",
  brightMagenta: "#a475f9",
  brightCyan: "#3192aa",
  brightWhite: "#8c959f",
};

/** The terminal's colours for theme `t`. */
export function terminalTheme(t: Theme = theme()): ITheme {
  return t === "light" ? LIGHT : DARK;
}

const open = new Set<Terminal>();
onThemeChange((t) => {
  for (const term of open) term.options.theme = terminalTheme(t);
});

/**
 * Keeps `term`'s colours with the page's theme from now on (set at once to
 * the theme in effect); the returned function lets go (call it on dispose).
 */
export function followTheme(term: Terminal): () => void {
  term.options.theme = terminalTheme();
  open.add(term);
  return () => open.delete(term);
}
