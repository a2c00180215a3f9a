//! The JavaScript the browser runs in pages: the snapshot (an outline of the
//! page with stable element refs) and the element lookup the actions use.
//!
//! Refs live on the elements themselves (`el.__fpRef`, kept across
//! snapshots while the element stays in the page) and in `window.__fp.refs`
//! (weak, so removed elements are freed). A navigation starts a new window,
//! so old refs fail with a message that says to take a new snapshot.

/// Installed in every document: `alert`, `confirm` and `prompt` answer at
/// once (as if dismissed: `undefined`, `false`, `null`) instead of blocking the
/// page, and are reported through `console.debug` with a marker the
/// collector turns into dialog reports (the first five, then one note at 20).
pub const DIALOGS: &str = r#"
(() => {
  if (window.__fpDialogs !== undefined) return;
  window.__fpDialogs = 0;
  const debug = console.debug.bind(console);
  const report = (kind, msg) => {
    const n = ++window.__fpDialogs;
    if (n <= 5) debug('__firepit_dialog__', kind, String(msg === undefined ? '' : msg).slice(0, 500));
    else if (n === 20) debug('__firepit_dialog__', kind, '(the page keeps opening dialogs; further ones are not reported)');
  };
  window.alert = m => { report('alert', m); };
  window.confirm = m => { report('confirm', m); return false; };
  window.prompt = m => { report('prompt', m); return null; };
})();
"#;

/// The marker of dialog reports in `console.debug`.
pub const DIALOG_MARK: &str = "__firepit_dialog__";

/// The element lookup: `__fpFind(ref, selector)` returns the element or throws
/// an error that says what to do.
pub const FIND: &str = r#"
function __fpFind(ref, sel) {
  if (ref) {
    const fp = window.__fp;
    const w = fp && fp.refs.get(ref);
    const el = w && w.deref();
    if (!el || !el.isConnected) throw new Error('ref ' + ref + ' is not on the page any more (the page changed or navigated): take a new snapshot');
    return el;
  }
  let el;
  try { el = document.querySelector(sel); } catch (e) { throw new Error('the selector ' + JSON.stringify(sel) + ' is not valid CSS: ' + e.message); }
  if (!el) throw new Error('no element matches the selector ' + JSON.stringify(sel));
  return el;
}
function __fpDescribe(el) {
  const name = (el.getAttribute('aria-label') || el.innerText || el.value || el.getAttribute('placeholder') || '').replace(/\s+/g, ' ').trim().slice(0, 60);
  return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (name ? ' "' + name + '"' : '');
}
"#;

/// The snapshot, a function of `(maxChars, maxNodes)` returning
/// `{title, url, text, truncated, nodes}`.
pub const SNAPSHOT: &str = r#"
(function (maxChars, maxNodes) {
  const fp = window.__fp || (window.__fp = { n: 0, refs: new Map() });
  const out = [];
  let size = 0, nodes = 0, truncated = false;
  const started = performance.now();
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'META', 'LINK', 'svg', 'SVG']);
  const CONTROLS = new Set(['A', 'BUTTON', 'INPUT', 'SELECT', 'TEXTAREA', 'SUMMARY']);
  const ROLES = new Set(['button', 'link', 'checkbox', 'radio', 'tab', 'menuitem', 'switch', 'textbox', 'combobox', 'option', 'slider', 'searchbox']);
  const STRUCT = { H1: 'heading', H2: 'heading', H3: 'heading', H4: 'heading', H5: 'heading', H6: 'heading', UL: 'list', OL: 'list', LI: 'item', TABLE: 'table', TR: 'row', FORM: 'form', NAV: 'navigation', MAIN: 'main', HEADER: 'header', FOOTER: 'footer', DIALOG: 'dialog', SECTION: 'section', ARTICLE: 'article', ASIDE: 'aside', P: 'paragraph', LABEL: 'label', IFRAME: 'iframe', IMG: 'image' };
  const clean = s => (s || '').replace(/\s+/g, ' ').trim();
  const q = (s, n) => JSON.stringify(clean(s).slice(0, n || 120));
  function visible(el) {
    const s = getComputedStyle(el);
    if (s.display === 'none' || s.visibility === 'hidden' || s.visibility === 'collapse') return false;
    if (el.getAttribute('aria-hidden') === 'true') return false;
    return s.display === 'contents' || el.getClientRects().length > 0;
  }
  function refOf(el) {
    if (!el.__fpRef || (fp.refs.get(el.__fpRef) || { deref() {} }).deref() !== el) {
      el.__fpRef = 'e' + (++fp.n);
    }
    fp.refs.set(el.__fpRef, new WeakRef(el));
    return el.__fpRef;
  }
  function label(el) {
    let s = el.getAttribute('aria-label');
    if (!s && el.labels && el.labels.length) s = el.labels[0].innerText;
    if (!s && el.getAttribute('aria-labelledby')) { const l = document.getElementById(el.getAttribute('aria-labelledby')); if (l) s = l.innerText; }
    if (!s && ['INPUT', 'TEXTAREA', 'SELECT'].indexOf(el.tagName) < 0) s = el.innerText;
    if (!s) s = el.getAttribute('alt') || el.getAttribute('title') || el.getAttribute('placeholder') || el.getAttribute('name') || '';
    return clean(s);
  }
  function emit(depth, line) {
    if (truncated) return;
    if (size + line.length + 1 > maxChars) { truncated = true; return; }
    out.push('  '.repeat(Math.min(depth, 20)) + line);
    size += line.length + 1 + 2 * Math.min(depth, 20);
  }
  function control(el, depth) {
    const tag = el.tagName, role = el.getAttribute('role');
    let kind = role || { A: 'link', BUTTON: 'button', SELECT: 'select', TEXTAREA: 'textbox', SUMMARY: 'summary' }[tag] || 'element';
    let extra = '';
    if (tag === 'INPUT') {
      const t = (el.type || 'text').toLowerCase();
      kind = { checkbox: 'checkbox', radio: 'radio', submit: 'button', button: 'button', reset: 'button', range: 'slider', file: 'file' }[t] || 'textbox';
      if (t === 'checkbox' || t === 'radio') extra += el.checked ? ' checked' : ' unchecked';
      else if (t === 'password') extra += ' value=' + (el.value ? '"•••"' : '""');
      else if (t !== 'submit' && t !== 'button') extra += ' value=' + q(el.value, 200) + (t !== 'text' ? ' type=' + t : '');
    } else if (tag === 'TEXTAREA') {
      extra += ' value=' + q(el.value, 200);
    } else if (tag === 'SELECT') {
      const opts = Array.from(el.options).slice(0, 30).map(o => (o.selected ? '*' : '') + clean(o.text).slice(0, 40));
      extra += ' options=[' + opts.join(' | ') + (el.options.length > 30 ? ' | …' : '') + ']';
    } else if (tag === 'A' && el.getAttribute('href')) {
      extra += ' -> ' + el.getAttribute('href').slice(0, 120);
    }
    if (el.disabled) extra += ' disabled';
    if (el === document.activeElement) extra += ' focused';
    emit(depth, '- ' + kind + ' ' + q(label(el), 80) + ' [ref=' + refOf(el) + ']' + extra);
  }
  function walk(node, depth) {
    if (truncated) return;
    if (++nodes > maxNodes || (nodes % 256 === 0 && performance.now() - started > 5000)) { truncated = true; return; }
    if (node.nodeType === 3) {
      const t = clean(node.textContent);
      if (t) emit(depth, q(t, 300));
      return;
    }
    if (node.nodeType !== 1) return;
    const el = node, tag = el.tagName;
    if (SKIP.has(tag) || !visible(el)) return;
    const role = el.getAttribute('role');
    const isControl = CONTROLS.has(tag) || (role && ROLES.has(role)) || el.hasAttribute('onclick') || (el.isContentEditable && !(el.parentElement && el.parentElement.isContentEditable));
    if (isControl) { control(el, depth); return; }
    // A label's text is already the name of its control.
    if (tag === 'LABEL' && el.control) {
      if (!el.contains(el.control)) return;
      for (const c of el.children) { walk(c, depth); if (truncated) return; }
      return;
    }
    const kind = STRUCT[tag];
    let d = depth;
    if (kind === 'heading') { emit(depth, '- heading ' + tag[1] + ' ' + q(el.innerText, 200)); return; }
    if (kind === 'image') { const alt = el.getAttribute('alt'); if (alt) emit(depth, '- image ' + q(alt, 80)); return; }
    if (kind === 'iframe') { emit(depth, '- iframe ' + (el.getAttribute('src') || '').slice(0, 120)); return; }
    if (kind && kind !== 'paragraph' && kind !== 'label') { emit(depth, '- ' + kind); d = depth + 1; }
    const kids = el.shadowRoot ? el.shadowRoot.childNodes : el.childNodes;
    for (const c of kids) { walk(c, d); if (truncated) return; }
  }
  const root = document.body || document.documentElement;
  if (root) walk(root, 0);
  return { title: document.title, url: location.href, text: out.join('\n'), truncated: truncated, nodes: nodes };
})
"#;

/// Where to click an element: scrolls it into view and returns its centre,
/// and what covers it if something else is on top.
pub const POINT: &str = r#"
(function (ref, sel) {
  const el = __fpFind(ref, sel);
  el.scrollIntoView({ block: 'center', inline: 'center' });
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) throw new Error(__fpDescribe(el) + ' has no size on the page (it is hidden)');
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  const covered = hit && hit !== el && !el.contains(hit) && !hit.contains(el) && !(el.labels && Array.from(el.labels).includes(hit)) ? __fpDescribe(hit) : null;
  return { x: x, y: y, what: __fpDescribe(el), covered: covered };
})
"#;

/// Focuses an element for typing, optionally clearing it.
pub const FOCUS: &str = r#"
(function (ref, sel, clear) {
  const el = __fpFind(ref, sel);
  el.scrollIntoView({ block: 'center' });
  el.focus();
  if (document.activeElement !== el && !el.contains(document.activeElement)) throw new Error(__fpDescribe(el) + ' cannot take the keyboard focus');
  if (clear) {
    if ('value' in el) { el.value = ''; el.dispatchEvent(new Event('input', { bubbles: true })); }
    else if (el.isContentEditable) { el.textContent = ''; }
  }
  return __fpDescribe(el);
})
"#;

/// Chooses an option of a `<select>` by value or by its text.
pub const SELECT: &str = r#"
(function (ref, sel, want) {
  const el = __fpFind(ref, sel);
  if (el.tagName !== 'SELECT') throw new Error(__fpDescribe(el) + ' is not a <select>');
  const o = Array.from(el.options).find(o => o.value === want) || Array.from(el.options).find(o => o.text.trim() === want);
  if (!o) throw new Error('no option ' + JSON.stringify(want) + '; the options are ' + JSON.stringify(Array.from(el.options).slice(0, 30).map(o => o.text.trim())));
  el.value = o.value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  el.dispatchEvent(new Event('change', { bubbles: true }));
  return o.text.trim();
})
"#;

/// Scrolls an element into view, or the page by `(dx, dy)`.
pub const SCROLL: &str = r#"
(function (ref, sel, dx, dy) {
  if (ref || sel) { const el = __fpFind(ref, sel); el.scrollIntoView({ block: 'center' }); return 'scrolled to ' + __fpDescribe(el); }
  window.scrollBy(dx, dy);
  return 'scrolled to x=' + Math.round(window.scrollX) + ' y=' + Math.round(window.scrollY) + ' of ' + document.documentElement.scrollHeight;
})
"#;
