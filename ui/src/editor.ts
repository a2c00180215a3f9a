// The code editor of the Files tab: CodeMirror 6 with line numbers, the
// active line, bracket matching, undo history, search (Ctrl+F), Tab that
// indents (Escape then Tab leaves the editor, as CodeMirror documents), and
// highlighting by file type. A language's grammar loads the first time a
// file of its type opens (its own chunk of the build), so the page itself
// stays small.

import { EditorState, Compartment, type Extension } from "@codemirror/state";
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  drawSelection,
  highlightSpecialChars,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, indentOnInput, syntaxHighlighting, HighlightStyle, indentUnit } from "@codemirror/language";
import { search, searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { tags as t } from "@lezer/highlight";

/** A file type's grammar, loaded on first use. */
type Loader = () => Promise<Extension>;

const LANGUAGES: [RegExp, string, Loader][] = [
  [/\.(m|c)?jsx?$/i, "JavaScript", async () => (await import("@codemirror/lang-javascript")).javascript({ jsx: true })],
  [/\.(m|c)?tsx?$/i, "TypeScript", async () => (await import("@codemirror/lang-javascript")).javascript({ jsx: true, typescript: true })],
  [/\.(py|pyi)$/i, "Python", async () => (await import("@codemirror/lang-python")).python()],
  [/\.(ex|exs|heex|eex)$/i, "Elixir", async () => (await import("codemirror-lang-elixir")).elixir()],
  [/\.rs$/i, "Rust", async () => (await import("@codemirror/lang-rust")).rust()],
  [/\.go$/i, "Go", async () => (await import("@codemirror/lang-go")).go()],
  [/\.(html?|svelte|vue)$/i, "HTML", async () => (await import("@codemirror/lang-html")).html()],
  [/\.(css|scss|less)$/i, "CSS", async () => (await import("@codemirror/lang-css")).css()],
  [/\.(json|jsonc|webmanifest)$|\.(babelrc|eslintrc)$|(^|\/)(package-lock|tsconfig)\.json$/i, "JSON", async () => (await import("@codemirror/lang-json")).json()],
  [/\.(md|markdown|mdx)$/i, "Markdown", async () => (await import("@codemirror/lang-markdown")).markdown()],
];

/** The language of a path, by its name: `[label, loader]`, or null for plain text. */
export function languageOf(path: string): { label: string; load: Loader } | null {
  const name = path.slice(path.lastIndexOf("/") + 1);
  for (const [re, label, load] of LANGUAGES) if (re.test(name)) return { label, load };
  return null;
}

/** Colours for the dark theme, by highlighting tag. */
const highlight = HighlightStyle.define([
  { tag: [t.keyword, t.controlKeyword, t.moduleKeyword, t.operatorKeyword], color: "#ff7b72" },
  { tag: [t.string, t.special(t.string), t.regexp], color: "#a5d6ff" },
  { tag: [t.number, t.bool, t.null, t.atom], color: "#79c0ff" },
  { tag: [t.comment, t.lineComment, t.blockComment], color: "#8b949e", fontStyle: "italic" },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], color: "#d2a8ff" },
  { tag: [t.typeName, t.className, t.namespace], color: "#ffa657" },
  { tag: [t.definition(t.variableName), t.propertyName], color: "#e6edf3" },
  { tag: [t.tagName, t.heading], color: "#7ee787", fontWeight: "600" },
  { tag: [t.attributeName, t.labelName], color: "#79c0ff" },
  { tag: [t.meta, t.processingInstruction], color: "#8b949e" },
  { tag: t.link, color: "#a5d6ff", textDecoration: "underline" },
  { tag: t.emphasis, fontStyle: "italic" },
  { tag: t.strong, fontWeight: "700" },
  { tag: t.invalid, color: "#f85149" },
]);

const theme = EditorView.theme(
  {
    "&": { height: "100%", fontSize: "12px", backgroundColor: "var(--bg)", color: "var(--text)" },
    ".cm-scroller": { fontFamily: "var(--mono)", lineHeight: "1.5" },
    ".cm-content": { caretColor: "var(--accent)" },
    ".cm-gutters": { backgroundColor: "var(--panel)", color: "var(--muted)", border: "none", borderRight: "1px solid var(--line)" },
    ".cm-activeLine": { backgroundColor: "rgba(255,255,255,0.04)" },
    ".cm-activeLineGutter": { backgroundColor: "rgba(255,255,255,0.06)", color: "var(--text)" },
    "&.cm-focused .cm-cursor": { borderLeftColor: "var(--accent)" },
    "&.cm-focused .cm-selectionBackground, .cm-selectionBackground, ::selection": { backgroundColor: "rgba(56,139,253,0.35)" },
    ".cm-searchMatch": { backgroundColor: "rgba(249,115,22,0.3)" },
    ".cm-panels": { backgroundColor: "var(--panel)", color: "var(--text)", borderColor: "var(--line)" },
    ".cm-panels input, .cm-panels button": { fontSize: "12px" },
    ".cm-flash-line": { backgroundColor: "rgba(249,115,22,0.25)" },
  },
  { dark: true },
);

/** An editor for one file at a time. */
export class CodeEditor {
  readonly el: HTMLElement;
  private view: EditorView;
  private language = new Compartment();
  private readOnly = new Compartment();
  private clean = "";
  private loadSeq = 0;

  /**
   * @param onChange called after every edit with whether the text differs from what was loaded or last saved
   * @param onSave called on Ctrl+S / Cmd+S
   */
  constructor(
    private readonly onChange: (dirty: boolean) => void,
    onSave: () => void,
  ) {
    this.el = document.createElement("div");
    this.el.className = "code-editor";
    this.el.id = "file-editor";
    this.view = new EditorView({
      parent: this.el,
      state: this.state("", [], false),
    });
    this.save = onSave;
  }

  private save: () => void;

  private state(doc: string, lang: Extension, readOnly: boolean): EditorState {
    return EditorState.create({
      doc,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        highlightActiveLine(),
        highlightSelectionMatches(),
        search({ top: true }),
        syntaxHighlighting(highlight),
        indentUnit.of("    "),
        EditorState.tabSize.of(4),
        keymap.of([
          { key: "Mod-s", preventDefault: true, run: () => (this.save(), true) },
          ...searchKeymap,
          ...historyKeymap,
          ...defaultKeymap,
          indentWithTab,
        ]),
        this.language.of(lang),
        this.readOnly.of(EditorState.readOnly.of(readOnly)),
        EditorView.contentAttributes.of({ "aria-label": "File contents" }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) this.onChange(this.dirty());
        }),
        theme,
      ],
    });
  }

  /** Shows `text` as the file at `path` (undo history starts afresh). */
  load(path: string, text: string): void {
    this.clean = text;
    this.view.setState(this.state(text, [], false));
    const lang = languageOf(path);
    this.el.dataset.language = lang?.label ?? "Plain text";
    if (!lang) return;
    const seq = ++this.loadSeq;
    lang
      .load()
      .then((ext) => {
        if (seq === this.loadSeq) this.view.dispatch({ effects: this.language.reconfigure(ext) });
      })
      .catch(() => {
        // Highlighting is a nicety: the file stays editable without it.
      });
  }

  /** The text now. */
  text(): string {
    return this.view.state.doc.toString();
  }

  /** Whether the text differs from what was loaded or last saved. */
  dirty(): boolean {
    return this.view.state.doc.toString() !== this.clean;
  }

  /** Marks `text` as what the file now holds (after a save). */
  saved(text: string): void {
    this.clean = text;
    this.onChange(this.dirty());
  }

  /** Puts the cursor at the start of line `line` (from 1), scrolled into view and flashed. */
  goToLine(line: number): void {
    const doc = this.view.state.doc;
    const n = Math.min(Math.max(1, Math.floor(line)), doc.lines);
    const at = doc.line(n);
    this.view.dispatch({
      selection: { anchor: at.from },
      effects: EditorView.scrollIntoView(at.from, { y: "center" }),
    });
    this.view.focus();
  }

  focus(): void {
    this.view.focus();
  }
}
