/* A form whose button has [data-once] submits once: the button is disabled on submit, so
   a double click sends one request (the server refuses a resubmitted token anyway). */
(function () {
  "use strict";
  document.querySelectorAll("form").forEach(function (form) {
    var button = form.querySelector("[data-once]");
    if (!button) { return; }
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-submitted")) { event.preventDefault(); return; }
      form.setAttribute("data-submitted", "1");
      button.disabled = true;
      button.textContent = "正在启动…";
    });
  });
})();
