"""Actions a journey runs in the CRM, one small class each, found through entry points."""
