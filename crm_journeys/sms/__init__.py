"""SMS as a journey channel, through Twilio's Programmable Messaging REST API.

``segments`` and ``signature`` are pure; ``phone`` normalises numbers with the
``phonenumbers`` library; ``twilio`` is the REST client; ``store`` keeps the local record
of each message (its sid, for idempotency and for mapping callbacks back to a contact);
``webhooks`` turns Twilio's status callbacks and inbound messages into journey events.
"""
