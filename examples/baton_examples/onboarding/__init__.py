"""Customer onboarding: KYC rules in code, a compliance review when they ask, a welcome e-mail, a CRM record."""
