// Live updates for the dashboard: the server re-renders each live section at every new tick and pushes
// it over Server-Sent Events; this swaps the sections in place. Pages work without it (no updates).
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  if (!url || !window.EventSource) {
    return;
  }
  var status = document.getElementById("live-status");
  var updates = 0;
  var source = new EventSource(url);

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  source.addEventListener("update", function (event) {
    var data = JSON.parse(event.data);
    var sections = data.sections || {};
    Object.keys(sections).forEach(function (id) {
      var element = document.getElementById(id);
      // Replace only what changed, so a focused button keeps its focus while the numbers move.
      if (element && element.innerHTML !== sections[id]) {
        element.innerHTML = sections[id];
      }
    });
    updates += 1;
    document.body.setAttribute("data-updates", String(updates));
    say("Live: updated at " + new Date().toLocaleTimeString());
    if (data.done) {
      source.close();
      say("Finished: no more updates.");
    }
  });
  source.addEventListener("open", function () {
    say("Live updates on.");
  });
  source.addEventListener("error", function () {
    // The server ends each stream after a while; EventSource reconnects by itself.
    say("Live updates reconnecting…");
  });
})();
