// Shoal's script embed, served at /embed.js. A classic script, for any page on any origin:
//
//   <script src="https://HOST/embed.js" data-channel="NAME"></script>
//
// mounts a <shoal-player> right after the script tag. Optional: data-width, data-height
// (CSS lengths or pixels; default 100% wide, 16:9), data-stats, data-target-delay,
// data-upload-limit, data-consume-only, data-http-only (the element's attributes).
// Without data-channel it only defines <shoal-player> (from https://HOST/player.js), so the
// page can write <shoal-player channel="NAME"></shoal-player> itself.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) {
    console.error("Shoal embed.js: load it with <script src=\"https://HOST/embed.js\">");
    return;
  }
  var origin = new URL(script.src, location.href).origin;
  var channel = script.getAttribute("data-channel");

  if (channel) {
    var player = document.createElement("shoal-player");
    player.setAttribute("channel", channel);
    player.setAttribute("server", origin);
    ["stats", "target-delay", "upload-limit", "consume-only", "http-only"].forEach(function (name) {
      var value = script.getAttribute("data-" + name);
      if (value !== null) player.setAttribute(name, value);
    });
    var size = function (value) {
      return /^\d+(\.\d+)?$/.test(value) ? value + "px" : value;
    };
    var width = script.getAttribute("data-width");
    var height = script.getAttribute("data-height");
    player.style.display = "block";
    player.style.background = "#000";
    player.style.width = width ? size(width) : "100%";
    player.style.maxWidth = "100%";
    if (height) {
      player.style.height = size(height);
      player.style.aspectRatio = "auto";
    } else {
      player.style.aspectRatio = "16 / 9";
    }
    // A script in <head> cannot host a video: mount at the top of <body> instead.
    var mount = function () {
      if (script.parentNode && script.parentNode !== document.head) {
        script.parentNode.insertBefore(player, script.nextSibling);
      } else {
        document.body.insertBefore(player, document.body.firstChild);
      }
    };
    if (script.parentNode === document.head && !document.body) {
      document.addEventListener("DOMContentLoaded", mount);
    } else {
      mount();
    }
  }

  import(origin + "/player.js").catch(function (e) {
    console.error("Shoal embed.js: could not load " + origin + "/player.js", e);
  });
})();
