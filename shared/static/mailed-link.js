// The token of a mailed link travels in the URL fragment (https://.../confirm-email#token=...), which
// browsers never send: no request line, access log or proxy sees it. This script, the only one the
// pages behind mailed links load (CSP script-src 'self'), moves it into the page's form
// (form[data-mailed-token] > input[name=token]), hides the "enter the code" field it makes unneeded,
// and removes the fragment from the address bar and history. A form marked data-submit is sent at once
// (domain_verify's review step, which changes nothing); every other form waits for the person's button.
// Without JavaScript the person types the code from the mail into the same field.
(function () {
  "use strict";
  var match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (!match) {
    return;
  }
  var token = decodeURIComponent(match[1]).trim();
  window.history.replaceState(null, "", window.location.pathname);
  var forms = document.querySelectorAll("form[data-mailed-token]");
  for (var i = 0; i < forms.length; i++) {
    var form = forms[i];
    var field = form.querySelector("input[name=token]");
    if (!field) {
      continue;
    }
    field.value = token;
    var entry = form.querySelector("[data-token-entry]");
    if (entry) {
      entry.hidden = true;
    }
    if (form.hasAttribute("data-submit")) {
      form.submit();
    }
  }
})();
