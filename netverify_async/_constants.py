"""Limits and addresses of the API, each with one home. Sources: Jumio's performNetverify and retrieval guides."""

from __future__ import annotations

import re

#: Largest raw (decoded) image accepted, in bytes. The guide says "max. 15MB" without saying whether MB means
#: 10**6 or 2**20 bytes; we take the smaller reading (15,000,000) so that nothing we let through can be refused.
MAX_IMAGE_BYTES = 15_000_000
#: The longest side of an image must be strictly greater than this many pixels.
MIN_LONGEST_SIDE_PX = 300
#: Each side of an image must be strictly smaller than this many pixels.
MAX_SIDE_PX = 8000

#: Length of Jumio's scan references as the guides document it (``String``, 36; every sample is a UUID). A
#: callback whose reference breaks it is still read, with an ``unexpected_format`` problem.
DOCUMENTED_SCAN_REFERENCE_LENGTH = 36
#: Longest scan reference accepted in a receipt or a retrieval call (slack over the documented 36 for other
#: formats: refusing a receipt would turn a billed submission into an unknown outcome).
MAX_SCAN_REFERENCE_LENGTH = 100
#: The one rule for a scan reference: usable as one segment of a retrieval URL, so ASCII letters, digits, '-'
#: and '_' (the guides give no character set; a UUID uses a subset), up to MAX_SCAN_REFERENCE_LENGTH.
SCAN_REFERENCE_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_SCAN_REFERENCE_LENGTH}}}")

PERFORM_NETVERIFY_PATH = "/api/netverify/v2/performNetverify"
SCANS_PATH = "/api/netverify/v2/scans"

#: Documented base URLs per region.
REGION_BASE_URLS = {
    "US": "https://netverify.com",
    "EU": "https://lon.netverify.com",
    "SGP": "https://core-sgp.jumio.com",
}

#: Maximum lengths of the request's string fields, by wire name.
MAX_LENGTHS = {
    "merchantIdScanReference": 100,
    "country": 3,
    "idType": 255,
    "enabledFields": 100,
    "merchantReportingCriteria": 100,
    "customerId": 100,
    "callbackUrl": 255,
    "firstName": 100,
    "lastName": 100,
    "usState": 100,
    "number": 100,
    "callbackGranularity": 255,
    "personalNumber": 14,
    "userConsent.userLocation.country": 3,
    "userConsent.userLocation.state": 100,
}

#: Continuous consent is valid for at most three years.
CONSENT_MAX_AGE_DAYS = 3 * 365 + 1

#: Jumio's prescribed polling schedule for the retrieval API, in seconds after submission.
RETRIEVAL_POLL_SCHEDULE_S = (40, 60, 100, 160, 240, 340, 460, 600, 760, 940)
#: The schedule used against a loopback base URL (the emulator, a local stub): results there take seconds, and
#: nothing is rate-limited by Jumio, so waiting 40 s for the first check would only look like a hang.
LOOPBACK_POLL_SCHEDULE_S = (0.2, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89)

#: Addresses Jumio sends callbacks from, per data center: the list in the callback guide plus the addresses
#: added in Jumio's newer documentation (US 52.8.136.236, 54.177.61.57, 54.183.15.212; APAC 13.238.100.17,
#: 13.238.203.238, 52.64.132.26). Jumio changes these lists from time to time.
CALLBACK_SOURCE_IPS = {
    "US": (
        "34.202.241.227",
        "34.226.103.119",
        "34.226.254.127",
        "52.52.51.178",
        "52.53.95.123",
        "54.67.101.173",
        "52.8.136.236",
        "54.177.61.57",
        "54.183.15.212",
    ),
    "EU": (
        "34.253.41.236",
        "35.157.27.193",
        "52.48.0.25",
        "52.57.194.92",
        "52.58.113.86",
        "52.209.180.134",
    ),
    "SGP": (
        "3.0.109.121",
        "52.76.184.73",
        "52.77.102.92",
        "13.238.100.17",
        "13.238.203.238",
        "52.64.132.26",
    ),
}

#: Host names that resolve to the current callback addresses, per data center (older and newer names).
CALLBACK_SOURCE_HOSTNAMES = {
    "US": ("callback.jumio.com", "callback.amer-1.jumio.ai"),
    "EU": ("callback.lon.jumio.com", "callback.emea-1.jumio.ai"),
    "SGP": ("callback.core-sgp.jumio.com", "callback.apac-1.jumio.ai"),
}

#: A real callback is a few kilobytes; bodies larger than this are refused unread by the parser.
CALLBACK_MAX_BODY_BYTES = 1_048_576
#: The callback guide documents about 70 fields; a form with more than this many pairs is not a callback.
CALLBACK_MAX_FIELDS = 1_000

#: Jumio's published request limits per account, as rate specs for the limiters (netverify_async._ratelimit).
#: performNetverify: accounts created after March 2024, older accounts, and the limit as first published.
INITIATE_RATE_LIMIT = "5/5s"
INITIATE_RATE_LIMIT_OLDER_ACCOUNTS = "15/5s"
INITIATE_RATE_LIMIT_LEGACY = "3/s,180/min"
#: The retrieval API: newer and older accounts.
RETRIEVAL_RATE_LIMIT = "75/5s"
RETRIEVAL_RATE_LIMIT_OLDER_ACCOUNTS = "225/5s"
