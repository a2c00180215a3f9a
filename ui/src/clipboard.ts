// Copy and paste in a terminal as people expect on each keyboard:
//
// - Linux terminals: Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes.
// - macOS: Cmd+C copies, Cmd+V pastes.
// - Windows terminals: Ctrl+C copies when text is selected (and clears the
//   selection, so the next Ctrl+C interrupts again), Ctrl+V pastes; without
//   a selection Ctrl+C is the interrupt, as always.
// - Ctrl+Insert copies, Shift+Insert pastes.
//
// Copying writes the selection with the Clipboard API (a key press is the
// user gesture it needs; no permission prompt). Pasting lets the browser do
// its own paste into xterm.js's textarea, which xterm.js sends to the shell as
// a paste (bracketed when the shell asks), so no clipboard permission is asked
// for either. Ctrl+V therefore no longer sends a literal ^V (bash's
// quoted-insert); Ctrl+Shift+V and the others do the same.

import type { Terminal } from "@xterm/xterm";

/** What a key press does to the clipboard, if anything. */
export function clipboardAction(e: KeyboardEvent, hasSelection: boolean): "copy" | "paste" | null {
  if (e.type !== "keydown") return null;
  const key = e.key.toLowerCase();
  const ctrl = e.ctrlKey && !e.altKey && !e.metaKey;
  const meta = e.metaKey && !e.ctrlKey && !e.altKey;
  if (ctrl && e.shiftKey && (key === "c" || e.code === "KeyC")) return "copy";
  if (ctrl && e.shiftKey && (key === "v" || e.code === "KeyV")) return "paste";
  if (meta && !e.shiftKey && (key === "c" || e.code === "KeyC")) return hasSelection ? "copy" : null;
  if (meta && !e.shiftKey && (key === "v" || e.code === "KeyV")) return "paste";
  if (ctrl && !e.shiftKey && (key === "c" || e.code === "KeyC")) return hasSelection ? "copy" : null;
  if (ctrl && !e.shiftKey && (key === "v" || e.code === "KeyV")) return "paste";
  if (ctrl && !e.shiftKey && key === "insert") return hasSelection ? "copy" : null;
  if (e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey && key === "insert") return "paste";
  return null;
}

/** A handler for `Terminal.attachCustomKeyEventHandler`: false keeps a key from the shell. */
export function clipboardKeys(term: Terminal): (e: KeyboardEvent) => boolean {
  return (e) => {
    const action = clipboardAction(e, term.hasSelection());
    if (action === "copy") {
      e.preventDefault();
      const text = term.getSelection();
      // Windows style: a copy with Ctrl+C ends the selection.
      if (e.ctrlKey && !e.shiftKey) term.clearSelection();
      void navigator.clipboard?.writeText(text).catch(() => {
        // no clipboard (an insecure origin): the selection stays for the browser's own copy
      });
      return false;
    }
    // Paste: not the shell's key; the browser's paste event reaches xterm.js.
    if (action === "paste") return false;
    return true;
  };
}
