// Guards against losing work: parts of the page that hold something unsaved
// (the file editor) register a guard; leaving the page (closing or reloading
// the tab) asks the browser's own question, and navigating inside the page
// asks first.

type Guard = () => string | null;

const guards = new Set<Guard>();

/** Registers a guard that says what would be lost (or null); returns its removal. */
export function addGuard(g: Guard): () => void {
  guards.add(g);
  return () => guards.delete(g);
}

/** What leaving now would lose, if anything. */
export function pendingLoss(): string | null {
  for (const g of guards) {
    const why = g();
    if (why) return why;
  }
  return null;
}

/** Whether the person agrees to leave (asked only when something would be lost). */
export function confirmLeave(): boolean {
  const why = pendingLoss();
  return !why || confirm(`${why} Leave anyway?`);
}

window.addEventListener("beforeunload", (e) => {
  if (pendingLoss()) {
    e.preventDefault();
    e.returnValue = "";
  }
});
