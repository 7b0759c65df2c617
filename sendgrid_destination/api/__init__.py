"""The HTTP layer for SendGrid's Marketing Contacts API, one job per module.

* ``endpoint``: base URL constants and their validation (no dependencies, so settings code
  can use it without loading the transport);
* ``messages``: SendGrid's error bodies parsed, and the one classifier of its message texts;
* ``retry_policy``: pure decisions: retry, give up or succeed, and how long to wait;
* ``transport``: sessions, one send, the retry loop and pacing by rate-limit headers;
* ``models``: typed results (import jobs, field definitions, lists) and the client's counters;
* ``errors_file``: the errors CSV of an import job, matched to contact keys;
* ``client``: ``SendGridClient``, the typed calls.

Nothing is imported here, so ``import sendgrid_destination.api.endpoint`` stays light.
"""
