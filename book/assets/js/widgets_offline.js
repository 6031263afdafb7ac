// Loaded on pages with widgets, after require.js and before the widget manager (embed-amd.js),
// so that the saved widgets render offline, from the book's own copy of the manager.
(function () {
  "use strict";
  // The manager's bundled AMD modules (@jupyter-widgets/controls, .../html-manager/dist/...) find
  // their icon fonts beside their own module path; without this, require.js would place those
  // paths beside the page (chapters/@jupyter-widgets/...) and every icon font would 404.
  var managerDir = new URL("../vendor/html-manager", document.currentScript.src).href;
  window.requirejs.config({
    paths: { "@jupyter-widgets": managerDir, "@jupyter-widgets/html-manager/dist": managerDir }
  });

  // Widget labels are typeset through the MathJax 2 call MathJax.Hub.Queue; the book loads
  // MathJax 3, which has no Hub, so each labelled widget threw a TypeError. Route the call to
  // MathJax 3. MathJax (a deferred script) has replaced its configuration object by the time
  // DOMContentLoaded fires, and the widgets render later, on the load event.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub) {
      return;
    }
    mathjax.Hub = {
      Queue: function (job) {
        var element = job[2];
        if (element && mathjax.startup && mathjax.startup.promise) {
          mathjax.startup.promise.then(function () { return mathjax.typesetPromise([element]); });
        }
      }
    };
  });
})();
