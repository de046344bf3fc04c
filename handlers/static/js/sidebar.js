// The staff sidebar (聊天工具栏): register the JS-SDK with the app identity, ask which
// customer the chat is with, load that customer's fragment. The server decides what the
// member may see; this file only finds the customer id and shows the cards.
(function () {
  "use strict";

  var config = document.getElementById("config");
  var content = document.getElementById("content");
  var loading = document.getElementById("loading");
  var entries = (config.dataset.entries || "").split(",");

  var shown = false;
  function show(card, detail, detailId) {
    if (shown) return; // the first problem is the one to tell
    shown = true;
    loading.hidden = true;
    var el = document.getElementById("card-" + card);
    if (el) el.hidden = false;
    if (detail && detailId) document.getElementById(detailId).textContent = String(detail);
  }

  function message(err) {
    if (!err) return "";
    return err.errMsg || err.message || String(err);
  }

  // One request answers both signatures; kept per page URL for this page's life (the
  // SDK asks again when the URL changes).
  var signatures = {};
  function sign(url) {
    if (!signatures[url]) {
      signatures[url] = fetch(config.dataset.signUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ url: url })
      }).then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
          return body;
        });
      });
      signatures[url].catch(function (err) {
        delete signatures[url];
        show("sign", message(err), "sign-error");
      });
    }
    return signatures[url];
  }

  // 为什么 is computed when first asked for (it recomputes the customer's metrics), once
  // for all badges; the panels come rendered and escaped by the server.
  var why = null;
  function loadWhy() {
    var holder = document.getElementById("why-panels");
    if (!why) {
      why = fetch(holder.dataset.url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.text(); })
        .then(function (html) { holder.innerHTML = html; });
      why.catch(function () { why = null; });
    }
    return why;
  }

  function toggle(badge) {
    var panel = document.getElementById(badge.getAttribute("aria-controls"));
    if (!panel) return;
    var open = badge.getAttribute("aria-expanded") !== "true";
    content.querySelectorAll("button.badge[aria-expanded='true']").forEach(function (b) {
      b.setAttribute("aria-expanded", "false");
      var other = document.getElementById(b.getAttribute("aria-controls"));
      if (other) other.hidden = true;
    });
    badge.setAttribute("aria-expanded", open ? "true" : "false");
    panel.hidden = !open;
  }

  function bindBadges() {
    content.addEventListener("click", function (event) {
      var badge = event.target.closest("button.badge[aria-controls]");
      if (!badge) return;
      loadWhy().then(function () { toggle(badge); });
    });
  }

  function loadCustomer(userId) {
    var url = config.dataset.customerUrl + encodeURIComponent(userId);
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        loading.hidden = true;
        // Rendered and escaped by the server; the CSP forbids inline script.
        content.innerHTML = html;
      });
  }

  async function start() {
    // Outside the client the real SDK's calls never settle: ask its environment first.
    var ww = window.ww;
    if (typeof ww === "undefined" || (ww.env && ww.env.isWeCom === false)) {
      show("outside");
      return;
    }
    ww.register({
      corpId: config.dataset.corpId,
      agentId: Number(config.dataset.agentId),
      jsApiList: ["getContext", "getCurExternalContact"],
      getConfigSignature: function (url) {
        return sign(url).then(function (s) { return s.corp; });
      },
      getAgentConfigSignature: function (url) {
        return sign(url).then(function (s) { return s.agent; });
      }
    });
    var entry;
    try {
      entry = (await ww.getContext()).entry;
    } catch (err) {
      // Inside the client a failure here is a refused registration (no permission).
      show("contact", message(err), "contact-error");
      return;
    }
    if (entries.indexOf(entry) < 0) {
      show("entry");
      return;
    }
    var contact;
    try {
      contact = await ww.getCurExternalContact();
    } catch (err) {
      var text = message(err);
      show(text.indexOf("without context") >= 0 ? "entry" : "contact", text, "contact-error");
      return;
    }
    await loadCustomer(contact.userId);
  }

  bindBadges();
  start().catch(function (err) { show("contact", message(err), "contact-error"); });
})();
