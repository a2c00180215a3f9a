// firepit: reports this page's uncaught errors and failed requests to the
// preview proxy (POST /__firepit/report, same origin), which makes them
// problems of the session. At most 20 reports per page load.
(function () {
  if (window.__firepit_report) return;
  window.__firepit_report = 1;
  var F = window.fetch, n = 0, seen = {}, U = "/__firepit/report";
  function s(v, m) { return String(v == null ? "" : v).slice(0, m); }
  function send(kind, message, where, stack) {
    var key = kind + message;
    if (seen[key] || ++n > 20) return;
    seen[key] = 1;
    var b = JSON.stringify({ kind: kind, message: s(message, 1000), where: s(where, 300),
      stack: s(stack, 2000), page: s(location.pathname + location.search, 300) });
    try { if (navigator.sendBeacon && navigator.sendBeacon(U, b)) return; } catch (e) {}
    try { F && F.call(window, U, { method: "POST", body: b, keepalive: true }); } catch (e) {}
  }
  function away(u) {
    try { return new URL(u, location.href).origin !== location.origin; } catch (e) { return false; }
  }
  addEventListener("error", function (e) {
    send("error", e.message || e.error, (e.filename || "") + ":" + e.lineno + ":" + e.colno,
      e.error && e.error.stack);
  });
  addEventListener("unhandledrejection", function (e) {
    var r = e.reason;
    send("rejection", r && r.message ? r.message : r, "", r && r.stack);
  });
  if (F) window.fetch = function (i, o) {
    var u = s(i && i.url || i, 300), m = (o && o.method) || (i && i.method) || "GET";
    return F.apply(this, arguments).then(function (r) {
      // Same-origin 5xx answers are the proxy's to report; others the page's.
      if (r.status >= 500 && away(r.url || u)) send("fetch", m + " " + u + " answered " + r.status, u);
      return r;
    }, function (e) {
      if (!e || e.name !== "AbortError") send("fetch", m + " " + u + " failed: " + e, u);
      throw e;
    });
  };
  var X = window.XMLHttpRequest && XMLHttpRequest.prototype;
  if (X) {
    var O = X.open, S = X.send;
    X.open = function (m, u) { this.__fp = s(m, 20) + " " + s(u, 300); return O.apply(this, arguments); };
    X.send = function () {
      var x = this;
      x.addEventListener("error", function () { send("fetch", x.__fp + " failed", x.__fp); });
      x.addEventListener("load", function () {
        if (x.status >= 500 && away(x.responseURL)) send("fetch", x.__fp + " answered " + x.status, x.__fp);
      });
      return S.apply(this, arguments);
    };
  }
})();
