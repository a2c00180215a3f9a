// "Rewind to here": the session's files go back to a checkpoint the agent
// made before a step (`POST …/checkpoints/{cp}/restore`), after a
// confirmation that names what is lost.

import { api } from "./api";

/** What a rewind to `checkpoint` loses: the steps made from it on. */
export function lossText(checkpoint: string, later: string[]): string {
  const steps = later.length
    ? `These steps and their changes to files are undone:\n${later.slice(0, 12).map((s) => `  • ${s}`).join("\n")}${later.length > 12 ? `\n  … and ${later.length - 12} more` : ""}\n`
    : "";
  return (
    `Rewind the session's files to checkpoint ${checkpoint}?\n\n` +
    steps +
    "Everything written in the machine since then (by the agent or in the terminal) is lost; " +
    "its processes restart. Later checkpoints are kept, so you can go forward again."
  );
}

/** Asks, then restores; resolves to whether it rewound. Errors are thrown. */
export async function rewind(session: string, checkpoint: string, later: string[]): Promise<boolean> {
  if (!window.confirm(lossText(checkpoint, later))) return false;
  await api.restore(session, checkpoint);
  return true;
}
