/* seam.js loader: loads the wasm SDK next to this script without touching the host page. */
(function () {
  var script = document.currentScript;
  var base = script && script.src ? script.src.replace(/[^/]*$/, "") : "/sdk/";
  import(base + "seam_sdk.js")
    .then(function (m) {
      return m.default({ module_or_path: base + "seam_sdk_bg.wasm" }).then(function () {
        window.seamVersion = m.version();
      });
    })
    .catch(function (e) {
      console.warn("seam: the SDK could not load", e);
    });
})();
