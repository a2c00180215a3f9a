// What the Files tab uploads: files picked one by one, a folder picked with
// `<input type=file webkitdirectory>` (each file's `webkitRelativePath`
// keeps its folders), or files and folders dropped on the tree (folders
// walked through `DataTransferItem.webkitGetAsEntry()`). Every path is
// checked before anything is written: a path that could leave the folder it
// goes to (`..`, an absolute path, an empty part) refuses the whole upload.

/** A file to upload, or a folder to make (`file` null), and its path below the folder it goes to. */
export interface Upload {
  rel: string;
  file: File | null;
}

/** Most files and folders one upload takes. */
export const MAX_UPLOAD = 1000;

/** Why `rel` cannot be a path below a folder, or null when it can. */
export function badPath(rel: string): string | null {
  if (rel === "") return "an empty name";
  if (rel.startsWith("/")) return "an absolute path";
  if (rel.includes("\0")) return "a NUL byte in the name";
  for (const part of rel.split("/")) {
    if (part === "") return "an empty folder name";
    if (part === "." || part === "..") return `a "${part}" in the path`;
  }
  return null;
}

/**
 * Refuses the whole upload when one path is bad or there are too many:
 * the error names the paths, and nothing has been written.
 */
export function checked(items: Upload[]): Upload[] {
  if (items.length > MAX_UPLOAD) {
    throw new Error(`${items.length} files and folders: at most ${MAX_UPLOAD} upload at once (upload a larger folder as an archive and unpack it in the terminal)`);
  }
  const bad = items.flatMap(({ rel }) => {
    const why = badPath(rel);
    return why ? [`${JSON.stringify(rel)} (${why})`] : [];
  });
  if (bad.length) {
    const shown = bad.slice(0, 3).join(", ") + (bad.length > 3 ? ` and ${bad.length - 3} more` : "");
    throw new Error(`nothing uploaded: ${shown} would not stay inside the folder`);
  }
  return items;
}

/** The files of an input: their folders kept where a folder was picked (`webkitRelativePath`). */
export function picked(files: File[]): Upload[] {
  return checked(files.map((file) => ({ rel: file.webkitRelativePath || file.name, file })));
}

/** The files and folders of a drop, folders read through. */
export async function dropped(entries: (FileSystemEntry | null)[], files: File[]): Promise<Upload[]> {
  const out: Upload[] = [];
  const walk = async (entry: FileSystemEntry, rel: string): Promise<void> => {
    if (out.length > MAX_UPLOAD) return;
    if (entry.isFile) {
      const file = await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail));
      out.push({ rel, file });
      return;
    }
    // The folder itself, so an empty one is made too.
    out.push({ rel, file: null });
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
      if (batch.length === 0) return;
      for (const child of batch) await walk(child, `${rel}/${child.name}`);
    }
  };
  for (const [i, entry] of entries.entries()) {
    if (entry) await walk(entry, entry.name);
    else if (files[i]) out.push({ rel: files[i].name, file: files[i] });
  }
  return checked(out);
}
