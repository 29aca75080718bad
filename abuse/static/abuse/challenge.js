// Solves the admin login's proof-of-work challenge (ALTCHA's v1 format) with the browser's own
// SubtleCrypto: find n <= maxnumber with SHA-256(salt + n) == challenge, then put the payload
// ALTCHA's widget would send (base64 JSON) in the form's "altcha" field. Same origin, no CDN.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("abuse-challenge-data").textContent);
  var field = document.getElementById("abuse-challenge-solution");
  var status = document.getElementById("abuse-challenge-status");
  var form = document.getElementById("login-form");
  var submit = form ? form.querySelector("[type=submit]") : null;
  var CHUNK = 500; // hashes in flight at once

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return b.toString(16).padStart(2, "0");
    }).join("");
  }

  function sha256(text) {
    return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)).then(hex);
  }

  async function solve() {
    for (var start = 0; start <= data.maxnumber; start += CHUNK) {
      var tries = [];
      for (var n = start; n < start + CHUNK && n <= data.maxnumber; n++) {
        tries.push(sha256(data.salt + n));
      }
      var hashes = await Promise.all(tries);
      var found = hashes.indexOf(data.challenge);
      if (found >= 0) {
        return start + found;
      }
    }
    return null;
  }

  if (!window.crypto || !crypto.subtle) {
    status.textContent = "This browser cannot solve the challenge here (it needs HTTPS).";
    return;
  }
  if (submit) {
    submit.disabled = true;
  }
  solve().then(function (number) {
    if (number === null) {
      status.textContent = "The challenge could not be solved: reload the page.";
      return;
    }
    field.value = btoa(JSON.stringify({
      algorithm: data.algorithm,
      challenge: data.challenge,
      number: number,
      salt: data.salt,
      signature: data.signature,
    }));
    status.textContent = "Done: you can log in.";
    if (submit) {
      submit.disabled = false;
    }
  });
})();
