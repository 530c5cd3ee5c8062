/* seam stub snippet: paste before the seam.js script tag. Until the SDK has loaded, window.seam
   is an array recording every call as [methodName, ...args]; each entry's `t` property is the
   time of the call (ms since epoch) so the SDK replays it with its original timestamp. */
(function () {
  var seam = (window.seam = window.seam || []);
  if (seam.invoked) return; // pasted twice, or the SDK is already there
  seam.invoked = true;
  var methods = ["load", "page", "track", "identify", "alias", "group", "reset", "flush",
    "consent", "anonymousId", "user"];
  for (var i = 0; i < methods.length; i++) {
    (function (method) {
      seam[method] = function () {
        var call = Array.prototype.slice.call(arguments);
        call.unshift(method);
        call.t = Date.now();
        seam.push(call);
        return seam;
      };
    })(methods[i]);
  }
})();
