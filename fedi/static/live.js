// Live updates (an enhancement: without this script the page is complete, a reload shows
// what is new). An element with data-live="/live/threads/ID" (or /live/groups/NAME) gets
// each new post the server lets this viewer see: the post's fragment is fetched and added
// to the element marked data-live-target inside it (or to the element itself), at the
// start when data-live-insert="start", else at the end; a polite status line announces it.
"use strict";

(function () {
  function statusLine() {
    var line = document.createElement("p");
    line.className = "live-status";
    line.setAttribute("role", "status");
    line.setAttribute("aria-live", "polite");
    document.body.appendChild(line);
    return line;
  }

  function follow(root, status) {
    var target = root.querySelector("[data-live-target]") || root;
    var atStart = root.getAttribute("data-live-insert") === "start";
    var source = new EventSource(root.getAttribute("data-live"));
    source.addEventListener("post", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (typeof event.id !== "number" || document.getElementById("p" + event.id)) { return; }
      fetch(event.url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : ""; })
        .then(function (html) {
          if (!html || document.getElementById("p" + event.id)) { return; }
          var parsed = document.createElement("template");
          parsed.innerHTML = html;
          var article = parsed.content.querySelector("article");
          if (!article) { return; }
          article.classList.add("live-new");
          if (atStart) { target.insertBefore(article, target.firstChild); } else { target.appendChild(article); }
          var who = article.querySelector(".meta a");
          status.textContent = "New post" + (who ? " by " + who.textContent : "") + ".";
        })
        .catch(function () {});
    });
  }

  var roots = document.querySelectorAll("[data-live]");
  if (!roots.length || !window.EventSource || !window.fetch) { return; }
  var status = statusLine();
  for (var i = 0; i < roots.length; i++) { follow(roots[i], status); }
})();
