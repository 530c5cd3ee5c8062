/* seam.js: the loader and the JavaScript face of the SDK. `cargo xtask build-sdk` puts the
   wasm-bindgen glue where GLUE is and minifies the result; the module is `seam.wasm` next to
   this script (the collector serves both with CORS). This file owns what is JavaScript's
   business: Segment's argument forms, reading the page for `context`, JSON.stringify, and the
   boundary: misuse logs one console warning naming the argument, and nothing here or in the
   wasm ever throws into the host page. Identity, consent, queueing and delivery are Rust. */
(function (w) {
  var queued = w.seam;
  if (queued && !Array.isArray(queued)) return; // already loaded
  queued = queued || [];
  var script = document.currentScript;
  var origin = location.origin, base = "/sdk/";
  try {
    if (script && script.src) {
      origin = new URL(script.src).origin;
      base = script.src.replace(/[^/?#]*([?#].*)?$/, "");
    }
  } catch (e) {}
  /*GLUE*/
  var sdk = wasm_bindgen;
  var ready = false, loaded = false;

  function Misuse(method, arg, expected) {
    return new Error("seam." + method + ": `" + arg + "` must be " + expected);
  }
  function isObject(v) {
    return v != null && typeof v == "object" && !Array.isArray(v);
  }
  function object(method, arg, v) {
    if (v == null) return {};
    if (isObject(v)) return v;
    throw Misuse(method, arg, "an object");
  }
  function id(method, arg, v, optional) {
    if (optional && v == null) return null;
    if (typeof v == "number" && isFinite(v)) return String(v);
    if (typeof v == "string" && v) return v;
    throw Misuse(method, arg, "a non-empty string or a number");
  }
  function page() {
    var l = location, d = document;
    return { path: l.pathname, referrer: d.referrer, search: l.search, title: d.title, url: l.href };
  }
  var timezone, seen;
  try {
    timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {}
  // The wasm keeps the context it was given last: "" means unchanged, so a call does not
  // re-read the page or cross the boundary with it.
  function context() {
    var l = location, d = document, key = l.href + "\n" + d.title + "\n" + d.referrer;
    if (key == seen) return "";
    seen = key;
    var n = navigator, s = w.screen || {}, campaign = {}, found = false;
    new URLSearchParams(location.search).forEach(function (v, k) {
      if (k.indexOf("utm_") == 0) {
        campaign[k == "utm_campaign" ? "name" : k.slice(4)] = v;
        found = true;
      }
    });
    var c = {
      page: page(), userAgent: n.userAgent, locale: n.language, timezone: timezone,
      screen: { width: s.width, height: s.height, density: w.devicePixelRatio }
    };
    if (found) c.campaign = campaign;
    return JSON.stringify(c);
  }
  // What the wasm calls back (the glue above names it): storage, the network, one timer.
  // Requests are aborted after 30 s, half a tab's claim on the events it sends, so the claim
  // never outlives the request.
  var timer, store, pool = new Uint32Array(64), left = 0, waiters = {}, flushes = 0;
  try {
    store = w.localStorage;
  } catch (e) {}
  var seam_host = {
    get: function (k) {
      try {
        return store.getItem(k);
      } catch (e) {}
    },
    set: function (k, v) {
      try {
        store.setItem(k, v);
        return true;
      } catch (e) {
        return false;
      }
    },
    remove: function (k) {
      try {
        store.removeItem(k);
      } catch (e) {}
    },
    keys: function () {
      try {
        return Object.keys(store).join("\n");
      } catch (e) {
        return "";
      }
    },
    cookies: function () {
      try {
        return document.cookie;
      } catch (e) {
        return "";
      }
    },
    set_cookie: function (c) {
      try {
        document.cookie = c;
      } catch (e) {}
    },
    random: function () {
      if (!left) {
        crypto.getRandomValues(pool);
        left = pool.length;
      }
      return pool[--left];
    },
    send: function (request, url, body, keepalive) {
      var answer = function (status, retryAfter) {
        try {
          sdk.on_response(request, status, retryAfter || "");
        } catch (e) {}
      };
      try {
        fetch(url, { method: "POST", body: body, keepalive: keepalive, signal: AbortSignal.timeout(30000) })
          .then(function (r) { answer(r.status, r.headers.get("retry-after")); }, function () { answer(0); });
      } catch (e) {
        setTimeout(function () { answer(0); });
      }
    },
    beacon: function (url, body) {
      try {
        return navigator.sendBeacon(url, body);
      } catch (e) {
        return false;
      }
    },
    wake: function (delay) {
      clearTimeout(timer);
      timer = setTimeout(function () {
        try {
          sdk.tick();
        } catch (e) {}
      }, delay);
    },
    warn: function (m) {
      console.warn(m);
    },
    flushed: function (id) {
      var resolve = waiters[id];
      delete waiters[id];
      if (resolve) resolve();
    }
  };
  // No unload listener: it would keep the page out of the back/forward cache.
  function hidden(unloading) {
    try {
      if (loaded) sdk.page_hide(unloading);
    } catch (e) {}
  }
  w.addEventListener("pagehide", function () { hidden(true); });
  // Another tab changed the queue: the wasm keeps an index of it rather than listing storage.
  w.addEventListener("storage", function (e) {
    try {
      if (loaded && (e.key == null || !e.key.indexOf("seam.q."))) sdk.stored(e.key || "", e.newValue != null);
    } catch (x) {}
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState == "hidden") hidden(false);
  });

  function record(kind, fields, at) {
    sdk.record(kind, JSON.stringify(fields), context(), at);
  }

  // Each takes the call time, then the caller's arguments in Segment's forms.
  var methods = {
    load: function (at, writeKey, options) {
      if (typeof writeKey != "string" || !writeKey || /\n/.test(writeKey)) throw Misuse("load", "writeKey", "a non-empty string");
      var o = object("load", "options", options);
      var categories = o.categories || ["necessary", "analytics", "marketing", "personalization"];
      if (!Array.isArray(categories) || categories.some(function (c) { return typeof c != "string" || /[=,]/.test(c); }))
        throw Misuse("load", "options.categories", "an array of category names");
      var failed = sdk.load([writeKey, (o.endpoint || origin).replace(/\/+$/, ""), o.consent || "opt-out",
        categories.join(","), o.cookieDomain || ""].join("\n"), o.flushAt || 0, o.flushInterval || 0,
        navigator.globalPrivacyControl === true);
      if (failed) throw new Error(failed);
      loaded = true;
    },
    page: function (at) {
      var args = [].slice.call(arguments, 1), names = [];
      while (typeof args[0] == "string" && names.length < 2) names.push(args.shift());
      var fields = { properties: Object.assign(page(), object("page", "properties", args[0])) };
      if (names.length == 2) fields.category = names[0];
      if (names.length) fields.name = names[names.length - 1];
      record("page", fields, at);
    },
    track: function (at, event, properties) {
      if (typeof event != "string" || !event) throw Misuse("track", "event", "a non-empty string");
      record("track", { event: event, properties: object("track", "properties", properties) }, at);
    },
    identify: function (at, userId, traits) {
      if (isObject(userId) && traits === undefined) {
        traits = userId;
        userId = null;
      }
      var user = id("identify", "userId", userId, true);
      var all = Object.assign(JSON.parse(sdk.user()).traits, object("identify", "traits", traits));
      sdk.set_user(user || "", JSON.stringify(all));
      record("identify", { traits: all }, at);
    },
    alias: function (at, userId, previousId) {
      var user = id("alias", "userId", userId);
      var u = JSON.parse(sdk.user());
      var previous = id("alias", "previousId", previousId, true) || u.userId || u.anonymousId;
      record("alias", { userId: user, previousId: previous }, at);
    },
    group: function (at, groupId, traits) {
      record("group", { groupId: id("group", "groupId", groupId), traits: object("group", "traits", traits) }, at);
    },
    reset: function (at) {
      sdk.reset(at);
    },
    flush: function () {
      return new Promise(function (resolve) {
        waiters[++flushes] = resolve;
        sdk.flush(flushes);
      });
    },
    consent: function (at, preferences) {
      var choices = [];
      if (preferences !== undefined) {
        if (!isObject(preferences)) throw Misuse("consent", "preferences", "an object of category: boolean");
        for (var k in preferences) {
          if (typeof preferences[k] != "boolean") throw Misuse("consent", "preferences." + k, "a boolean");
          if (!/[=,]/.test(k)) choices.push(k + "=" + (preferences[k] ? 1 : 0));
        }
      }
      return JSON.parse(sdk.consent(choices.join(","), context(), at) || "{}");
    },
    anonymousId: function () {
      return JSON.parse(sdk.user()).anonymousId;
    },
    user: function () {
      return JSON.parse(sdk.user());
    }
  };

  function run(name, args, at) {
    try {
      if (name != "load" && !loaded) throw new Error("seam." + name + ": call seam.load(writeKey) first");
      return methods[name].apply(null, [at].concat(args));
    } catch (e) {
      try {
        console.warn(e && e.message ? e.message : "seam: internal error in " + name);
      } catch (_) {}
    }
  }
  var api = {};
  Object.keys(methods).forEach(function (name) {
    api[name] = function () {
      var args = [].slice.call(arguments);
      if (ready) return run(name, args, Date.now());
      var call = [name].concat(args);
      call.t = Date.now();
      queued.push(call);
    };
  });
  w.seam = api;
  try {
    sdk({ module_or_path: base + "seam.wasm" })
      .then(function () {
        ready = true;
        var key = script && script.getAttribute("data-write-key");
        if (key)
          run("load", [key, {
            endpoint: script.getAttribute("data-endpoint"),
            consent: script.getAttribute("data-consent")
          }], Date.now());
        // seam.load() calls first: the other calls need a loaded SDK.
        queued.forEach(function (c) {
          if (c[0] == "load") run("load", c.slice(1), c.t);
        });
        queued.forEach(function (c) {
          if (c[0] != "load" && methods[c[0]]) run(c[0], c.slice(1), c.t || Date.now());
        });
        queued.length = 0;
      })
      .catch(function (e) {
        console.warn("seam: the SDK could not start", e);
      });
  } catch (e) {
    console.warn("seam: the SDK could not start", e);
  }
})(window);
