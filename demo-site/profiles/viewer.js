/* seam profile viewer: search, recently active profiles, and one profile with its identity graph,
   traits, computed traits, consent and timeline, polled while events arrive.

   Everything the API returns was sent by visitors, so it is untrusted: it reaches the page only
   as text nodes (textContent, createTextNode) or through setAttribute on attributes that cannot
   run code (class, title, data-*, and href values this file builds itself as "?id=…").
   Nothing here uses innerHTML, and the admin token lives only in sessionStorage. */
(function () {
  "use strict";

  var TOKEN_KEY = "seam-admin-token";
  var POLL_MS = 2000;
  var SVG = "http://www.w3.org/2000/svg";
  var SAFE_ATTRS = { class: 1, id: 1, title: 1, type: 1, role: 1, colspan: 1, open: 1, "aria-label": 1 };

  var app = document.getElementById("app");
  var tokenForm = document.getElementById("token-form");
  var searchForm = document.getElementById("search-form");
  var searchInput = document.getElementById("search");
  var live = document.getElementById("live");
  var pollTimer = null;
  var lastRendered = null;

  // ---- safe DOM helpers ----------------------------------------------------------------------

  /* Builds an element; children that are not nodes become text, whatever they contain. */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined) return;
      if (SAFE_ATTRS[k] || k.indexOf("data-") === 0) {
        node.setAttribute(k, String(v));
      } else {
        throw new Error("viewer: attribute " + k + " is not on the safe list");
      }
    });
  }

  function append(node, children) {
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    });
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    append(node, children);
    return node;
  }

  /* The only links the viewer makes: to itself, with an identifier as a query parameter. */
  function profileHref(id) {
    if (id === "") return "/profiles/";
    return "/profiles/?" + new URLSearchParams({ id: id }).toString();
  }

  function link(id, children, attrs) {
    var a = el("a", attrs, children);
    a.setAttribute("href", profileHref(id));
    a.addEventListener("click", function (e) {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      history.pushState(null, "", profileHref(id));
      route();
    });
    return a;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ---- formatting ----------------------------------------------------------------------------

  function str(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "string") return v;
    try { return JSON.stringify(v); } catch (e) { return String(v); }
  }

  function when(ts) {
    if (!ts) return "—";
    var d = new Date(ts);
    if (isNaN(d)) return str(ts);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function ago(ts) {
    var d = new Date(ts);
    if (!ts || isNaN(d)) return "";
    var s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 60) return s <= 1 ? "just now" : s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function num(v, digits) {
    return typeof v === "number" && isFinite(v) ? v.toFixed(digits || 0) : "—";
  }

  function short(v, n) {
    v = str(v);
    return v.length > n ? v.slice(0, n - 1) + "…" : v;
  }

  function identifier(i) {
    return i.type + ":" + i.value;
  }

  function device(ua) {
    if (!ua || typeof ua !== "string") return "unknown device";
    var browser = /Edg\//.test(ua) ? "Edge" : /HeadlessChrome/.test(ua) ? "Headless Chrome"
      : /Chrome\//.test(ua) ? "Chrome" : /Firefox\//.test(ua) ? "Firefox" : /Safari\//.test(ua) ? "Safari" : "Browser";
    var os = /iPhone|iPad/.test(ua) ? "iOS" : /Android/.test(ua) ? "Android" : /Windows/.test(ua) ? "Windows"
      : /Mac OS X/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : "";
    return os ? browser + " on " + os : browser;
  }

  /* The name a person is shown by: a name or email trait, else their strongest identifier. */
  function displayName(p) {
    var t = p.traits || {};
    if (typeof t.name === "string" && t.name.trim()) return t.name;
    if (typeof t.email === "string" && t.email.trim()) return t.email;
    var best = bestIdentity(p);
    return best ? (best.type === "anonymous_id" ? "Anonymous visitor" : best.value) : str(p.id);
  }

  function bestIdentity(p) {
    var order = ["user_id", "email", "phone"];
    var ids = p.identities || [];
    for (var i = 0; i < order.length; i++) {
      for (var j = 0; j < ids.length; j++) if (ids[j].type === order[i]) return ids[j];
    }
    for (var k = 0; k < ids.length; k++) if (ids[k].type !== "anonymous_id") return ids[k];
    return ids[0] || null;
  }

  // ---- API -----------------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function api(path) {
    return fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store", credentials: "omit" })
      .then(function (res) {
        return res.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
          if (res.ok) return body;
          var err = new Error((body && body.message) || ("HTTP " + res.status));
          err.status = res.status;
          err.code = body && body.code;
          throw err;
        });
      });
  }

  function profilePath(id) {
    var at = id.indexOf(":");
    if (at < 1) return null;
    return "/v1/profiles/" + encodeURIComponent(id.slice(0, at)) + ":" + encodeURIComponent(id.slice(at + 1));
  }

  function onApiError(err, where) {
    if (err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showGate("The collector did not accept that token.");
      return;
    }
    clear(where);
    where.appendChild(el("div", { class: "notice error", id: "api-error" }, [
      err.status === 404 ? "No profile has that identifier." : "The profile API answered: " + err.message
    ]));
  }

  // ---- token gate ----------------------------------------------------------------------------

  function showGate(message) {
    stopPolling();
    clear(app);
    searchForm.hidden = true;
    live.hidden = true;
    document.getElementById("forget-token").hidden = true;
    tokenForm.hidden = false;
    document.getElementById("token-error").textContent = message || "";
    document.getElementById("admin-token").focus();
  }

  tokenForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var value = document.getElementById("admin-token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("admin-token").value = "";
    route();
  });

  document.getElementById("forget-token").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    showGate("");
  });

  searchForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = searchInput.value.trim();
    history.pushState(null, "", q ? "/profiles/?" + new URLSearchParams({ q: q }).toString() : "/profiles/");
    route();
  });

  window.addEventListener("popstate", route);

  // ---- polling -------------------------------------------------------------------------------

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  function poll(fn) {
    stopPolling();
    var run = function () {
      fn().then(function () {
        live.hidden = false;
        live.textContent = "live · updated " + new Date().toLocaleTimeString();
      }, function () {}).then(function () {
        pollTimer = setTimeout(run, POLL_MS);
      });
    };
    run();
  }

  // ---- lists ---------------------------------------------------------------------------------

  function profileRow(p) {
    var best = bestIdentity(p);
    var c = p.computed || {};
    var anon = (p.identities || []).filter(function (i) { return i.type === "anonymous_id"; }).length;
    var row = el("li", { class: "row", "data-profile": p.id }, [
      el("span", { class: "avatar" }, [displayName(p).slice(0, 1).toUpperCase()]),
      el("span", { class: "row-main" }, [
        el("strong", {}, [displayName(p)]),
        el("small", {}, [(best ? identifier(best) : str(p.id)) + " · " + anon + " anonymous ID" + (anon === 1 ? "" : "s")])
      ]),
      el("span", { class: "row-stats" }, [
        el("span", {}, [num(c.orders) + (c.orders === 1 ? " order" : " orders")]),
        el("span", {}, ["LTV " + num(c.total_revenue, 2)]),
        el("small", {}, [ago(c.last_seen || p.updated_at)])
      ])
    ]);
    return best ? link(identifier(best), [row], { class: "row-link" }) : row;
  }

  function listInto(target, title, path, emptyText) {
    return api(path).then(function (body) {
      var key = JSON.stringify(body);
      if (target.getAttribute("data-key") === key) return;
      target.setAttribute("data-key", key);
      clear(target);
      target.appendChild(el("h2", {}, [title]));
      var profiles = (body && body.profiles) || [];
      if (!profiles.length) {
        target.appendChild(el("p", { class: "muted" }, [emptyText]));
        return;
      }
      target.appendChild(el("ul", { class: "rows" }, profiles.map(profileRow)));
    });
  }

  function showHome(q) {
    clear(app);
    searchInput.value = q || "";
    var box = el("section", { class: "panel", id: q ? "results" : "recent" });
    app.appendChild(box);
    var path = q
      ? "/v1/profiles?" + new URLSearchParams({ q: q, limit: "50" }).toString()
      : "/v1/profiles?limit=25";
    var title = q ? "Profiles matching “" + q + "”" : "Recently active";
    poll(function () {
      return listInto(box, title, path, q ? "No profile matches." : "No profiles yet: browse the shop to make one.")
        .catch(function (err) { onApiError(err, box); throw err; });
    });
  }

  // ---- one profile ---------------------------------------------------------------------------

  function showProfile(id) {
    clear(app);
    lastRendered = null;
    var path = profilePath(id);
    var root = el("div", { id: "profile" });
    app.appendChild(root);
    if (!path) {
      root.appendChild(el("div", { class: "notice error" }, ["Identifiers look like type:value, for example user_id:42 or email:a@b.c."]));
      return;
    }
    poll(function () {
      return Promise.all([
        api(path),
        api(path + "/events?limit=200"),
        api(path + "/merges").catch(function () { return { merges: [], dropped: [] }; })
      ]).then(function (r) {
        var key = JSON.stringify(r);
        if (key === lastRendered) return;
        lastRendered = key;
        renderProfile(root, r[0] || {}, (r[1] && r[1].events) || [], r[2] || {});
      }).catch(function (err) { onApiError(err, root); throw err; });
    });
  }

  function renderProfile(root, p, events, merges) {
    var scrollY = window.scrollY;
    var openDetails = {};
    root.querySelectorAll("details[data-id]").forEach(function (d) { if (d.open) openDetails[d.getAttribute("data-id")] = 1; });
    clear(root);
    var c = p.computed || {};
    var rfm = c.rfm || {};
    var best = bestIdentity(p);
    document.title = displayName(p) + " · seam profiles";

    root.appendChild(el("section", { class: "head" }, [
      el("span", { class: "avatar big" }, [displayName(p).slice(0, 1).toUpperCase()]),
      el("div", {}, [
        el("h1", { id: "profile-name" }, [displayName(p)]),
        el("p", { class: "muted" }, [
          str(p.id) + (best ? " · " + identifier(best) : "") + " · first seen " + when(c.first_seen || p.created_at)
        ])
      ]),
      rfm.segment ? el("span", { class: "segment", id: "rfm-segment", title: "RFM segment" }, [str(rfm.segment)]) : null
    ]));

    root.appendChild(el("section", { class: "cards", id: "computed" }, [
      card("Lifetime value", num(c.total_revenue, 2), "revenue", "ltv"),
      card("Orders", num(c.orders), c.last_order_at ? "last " + when(c.last_order_at) : "none yet", "orders"),
      card("Average order", num(c.average_order_value, 2), "per order", "aov"),
      card("Events", num(c.event_count), num(c.page_views) + " page views · " + num(c.sessions) + " sessions", "events"),
      card("RFM segment", rfm.segment ? str(rfm.segment) : "—",
        "R " + str(rfm.recency) + " · F " + str(rfm.frequency) + " · M " + str(rfm.monetary), "rfm"),
      card("Last seen", ago(c.last_seen) || "—", when(c.last_seen), "last-seen")
    ]));

    root.appendChild(el("section", { class: "panel", id: "identity" }, [
      el("h2", {}, ["Identity graph"]),
      graph(p, events, joins(merges)),
      identityTable(p, events, joins(merges)),
      mergeList(merges)
    ]));

    root.appendChild(el("div", { class: "columns" }, [
      el("section", { class: "panel", id: "traits" }, [el("h2", {}, ["Traits"]), kvTable(p.traits), p.first_touch ? el("h3", {}, ["First touch"]) : null, p.first_touch ? kvTable(p.first_touch) : null]),
      el("section", { class: "panel", id: "consent" }, [el("h2", {}, ["Consent"]), consentView(p.consent)])
    ]));

    root.appendChild(el("section", { class: "panel", id: "timeline" }, [
      el("h2", {}, ["Timeline"]),
      timeline(p, events, openDetails)
    ]));
    window.scrollTo(0, scrollY);
  }

  function card(label, value, sub, key) {
    return el("div", { class: "card", "data-metric": key }, [
      el("small", {}, [label]), el("strong", { class: "value" }, [value]), el("span", { class: "muted" }, [sub])
    ]);
  }

  function kvTable(obj) {
    if (!obj || typeof obj !== "object" || !Object.keys(obj).length) return el("p", { class: "muted" }, ["None."]);
    return el("table", { class: "kv" }, [el("tbody", {}, Object.keys(obj).sort().map(function (k) {
      return el("tr", {}, [el("th", {}, [k]), el("td", { "data-trait": k }, [str(obj[k])])]);
    }))]);
  }

  /* For each anonymous ID, the user agent of the events it sent: that is the device it stands for. */
  function devicesByAnonymousId(events) {
    var out = {};
    events.forEach(function (e) {
      var ua = e.context && e.context.userAgent;
      if (typeof e.anonymousId === "string" && ua && !out[e.anonymousId]) out[e.anonymousId] = ua;
    });
    return out;
  }

  /* How an identifier joined this person: through a merge when one brought it over, otherwise
     the rule and event that first added it. */
  function joins(merges) {
    var out = {};
    ((merges && merges.merges) || []).forEach(function (m) {
      (m.identifiers || []).forEach(function (i) {
        out[identifier(i)] = { rule: str(m.rule) + " merge", at: m.at, message_id: m.message_id };
      });
    });
    return function (i) {
      var merged = out[identifier(i)];
      if (merged) return merged;
      var by = i.added_by || {};
      return { rule: !by.rule || by.rule === "event" ? "first event" : str(by.rule), at: i.first_seen, message_id: by.message_id };
    };
  }

  function graph(p, events, joinOf) {
    var ids = p.identities || [];
    var anon = ids.filter(function (i) { return i.type === "anonymous_id"; });
    var known = ids.filter(function (i) { return i.type !== "anonymous_id"; });
    var devs = devicesByAnonymousId(events);
    var rows = Math.max(anon.length, known.length, 1);
    var W = 980, rowH = 82, H = Math.max(220, rows * rowH + 40);
    var cx = W / 2, cy = H / 2;
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "graph", role: "img", "aria-label": "Identity graph" });
    s.appendChild(svg("title", {}, ["Identifiers joined into " + displayName(p)]));

    function column(list, x, side) {
      var top = cy - (list.length - 1) * rowH / 2;
      list.forEach(function (i, n) {
        var y = top + n * rowH;
        var edgeX = side < 0 ? x + 150 : x - 150;
        var g = svg("g", { class: "node " + i.type.replace(/[^a-z_]/gi, ""), "data-identity": identifier(i) });
        g.appendChild(svg("title", {}, [
          identifier(i) + "\njoined by " + joinOf(i).rule + (joinOf(i).message_id ? " (event " + str(joinOf(i).message_id) + ")" : "") +
          "\nfirst seen " + when(i.first_seen) + "\nlast seen " + when(i.last_seen)
        ]));
        g.appendChild(svg("path", { class: "edge", d: "M" + edgeX + " " + y + " C " + (edgeX + cx) / 2 + " " + y + ", " + (edgeX + cx) / 2 + " " + cy + ", " + (cx + side * 70) + " " + cy }));
        g.appendChild(svg("rect", { x: x - 150, y: y - 32, width: 300, height: 64, rx: 10, class: "box" }));
        g.appendChild(svg("text", { x: x, y: y + 25, "text-anchor": "middle", class: "edge-label" }, [
          "joined by " + joinOf(i).rule + " · " + when(joinOf(i).at).slice(11, 19)
        ]));
        g.appendChild(svg("text", { x: x, y: y - 13, "text-anchor": "middle", class: "kind" }, [
          i.type === "anonymous_id" ? "anonymous ID · " + device(devs[i.value]) : i.type.replace("_", " ")
        ]));
        g.appendChild(svg("text", { x: x, y: y + 6, "text-anchor": "middle", class: "val" }, [short(i.value, 30)]));
        s.appendChild(g);
      });
    }
    column(anon, 160, -1);
    column(known, W - 160, 1);
    s.appendChild(svg("circle", { cx: cx, cy: cy, r: 70, class: "hub" }));
    s.appendChild(svg("text", { x: cx, y: cy - 4, "text-anchor": "middle", class: "hub-name" }, [short(displayName(p), 15)]));
    s.appendChild(svg("text", { x: cx, y: cy + 16, "text-anchor": "middle", class: "hub-sub" }, [ids.length + " identifiers"]));
    return el("div", { class: "graph-wrap" }, [s]);
  }

  function identityTable(p, events, joinOf) {
    var devs = devicesByAnonymousId(events);
    var ids = p.identities || [];
    var rows = ids.map(function (i) {
      return el("tr", { "data-identity": identifier(i) }, [
        el("td", {}, [el("span", { class: "pill " + (i.type === "anonymous_id" ? "anon" : "known") }, [i.type])]),
        el("td", { class: "mono" }, [link(identifier(i), [str(i.value)])]),
        el("td", {}, [i.type === "anonymous_id" ? device(devs[i.value]) : ""]),
        el("td", {}, [joinOf(i).rule]),
        el("td", { class: "mono small", title: str(joinOf(i).message_id) }, [joinOf(i).message_id ? short(joinOf(i).message_id, 18) : "—"]),
        el("td", {}, [when(i.first_seen)]),
        el("td", {}, [when(i.last_seen)])
      ]);
    });
    var table = el("table", { class: "grid-table", id: "identities" }, [
      el("thead", {}, [el("tr", {}, ["Type", "Value", "Device", "Joined by", "By event", "First seen", "Last seen"].map(function (h) { return el("th", {}, [h]); }))]),
      el("tbody", {}, rows)
    ]);
    var devices = (p.devices || []).map(function (d) {
      return el("li", { title: str(d.user_agent) }, [device(d.user_agent) + " · " + when(d.first_seen) + " → " + when(d.last_seen)]);
    });
    return el("div", {}, [table, devices.length ? el("h3", {}, ["Devices"]) : null, devices.length ? el("ul", { class: "plain", id: "devices" }, devices) : null]);
  }

  function mergeList(m) {
    var merges = (m && m.merges) || [];
    var dropped = (m && m.dropped) || [];
    if (!merges.length && !dropped.length) return el("p", { class: "muted", id: "merges" }, ["No merges: every identifier arrived on this profile directly."]);
    return el("div", { id: "merges" }, [
      el("h3", {}, ["Why these are one person"]),
      el("ul", { class: "plain" }, merges.map(function (x) {
        return el("li", {}, [
          when(x.at) + " — rule ", el("strong", {}, [str(x.rule)]), " (event ", el("span", { class: "mono" }, [str(x.message_id)]), ") merged ",
          el("span", { class: "mono" }, [str(x.merged)]), " into ", el("span", { class: "mono" }, [str(x.survivor)]),
          (x.identifiers || []).length ? " via " + x.identifiers.map(function (i) { return identifier(i); }).join(", ") : ""
        ]);
      }).concat(dropped.map(function (d) {
        return el("li", { class: "dropped" }, [
          when(d.at) + " — left out ", el("span", { class: "mono" }, [d.identifier ? identifier(d.identifier) : "—"]),
          " (rule " + str(d.rule) + "): " + str(d.reason)
        ]);
      })))
    ]);
  }

  function consentView(consent) {
    if (!consent || !consent.categories) return el("p", { class: "muted" }, ["No consent recorded."]);
    var cats = consent.categories;
    var pills = Object.keys(cats).sort().map(function (k) {
      return el("span", { class: "pill " + (cats[k] === true ? "on" : "off"), "data-category": k }, [k + (cats[k] === true ? " ✓" : " ✗")]);
    });
    var history = (consent.history || []).slice().reverse().map(function (h) {
      var c = h.categories || {};
      return el("li", {}, [
        el("span", { class: "muted" }, [when(h.at)]), " ",
        Object.keys(c).sort().map(function (k) { return k + (c[k] === true ? " ✓" : " ✗"); }).join("  ")
      ]);
    });
    return el("div", {}, [
      el("div", { class: "pills", id: "consent-state" }, pills),
      el("p", { class: "muted" }, ["Updated " + when(consent.updated_at)]),
      el("h3", {}, ["History"]),
      history.length ? el("ul", { class: "plain", id: "consent-history" }, history) : el("p", { class: "muted" }, ["No changes recorded."])
    ]);
  }

  function eventTitle(e) {
    if (e.type === "track") return str(e.event);
    if (e.type === "page" || e.type === "screen") return e.type + (e.name ? ": " + str(e.name) : "");
    return str(e.type);
  }

  function eventSummary(e) {
    var p = e.properties || {};
    var parts = [];
    if (e.type === "page" && e.context && e.context.page && e.context.page.path) parts.push(str(e.context.page.path));
    if (p.name && e.type === "track") parts.push(str(p.name));
    if (p.order_id) parts.push("order " + str(p.order_id));
    if (typeof p.revenue === "number") parts.push("revenue " + p.revenue.toFixed(2) + (p.currency ? " " + str(p.currency) : ""));
    if (e.type === "identify" && e.traits && e.traits.email) parts.push(str(e.traits.email));
    return parts.join(" · ");
  }

  function timeline(p, events, openDetails) {
    if (!events.length) return el("p", { class: "muted" }, ["No events yet."]);
    // Anonymous events are "pre-login" only for a person who did sign in at some point.
    var signedIn = (p.identities || []).some(function (i) { return i.type === "user_id"; });
    var mark = signedIn ? "anonymous · pre-login" : "anonymous";
    return el("ol", { class: "timeline" }, events.map(function (e) {
      var anonymous = !e.userId;
      var id = str(e.messageId);
      var d = el("details", { "data-id": id }, [
        el("summary", {}, [
          el("span", { class: "t" }, [when(e.timestamp).slice(0, 19)]),
          el("span", { class: "kind " + str(e.type) }, [eventTitle(e)]),
          el("span", { class: "sum" }, [eventSummary(e)]),
          anonymous ? el("span", { class: "pill anon", title: "Sent before the visitor signed in, by anonymous ID " + str(e.anonymousId) }, [mark]) : null
        ]),
        el("pre", {}, [JSON.stringify({ messageId: e.messageId, type: e.type, event: e.event, name: e.name, userId: e.userId, anonymousId: e.anonymousId, properties: e.properties, traits: e.traits, timestamp: e.timestamp, receivedAt: e.receivedAt }, null, 2)])
      ]);
      if (openDetails[id]) d.open = true;
      return el("li", { class: anonymous ? "anonymous" : "known", "data-event": str(e.type === "track" ? e.event : e.type) }, [d]);
    }));
  }

  // ---- routing -------------------------------------------------------------------------------

  function route() {
    stopPolling();
    if (!token()) {
      showGate("");
      return;
    }
    tokenForm.hidden = true;
    searchForm.hidden = false;
    document.getElementById("forget-token").hidden = false;
    var params = new URLSearchParams(location.search);
    var id = params.get("id");
    if (id) showProfile(id);
    else showHome(params.get("q"));
  }

  route();
})();
