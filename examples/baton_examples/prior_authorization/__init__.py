"""Prior authorization: a model reads the doctor's note, rules check the policy, the CRM logs it, a clinician reviews what the rules cannot pass."""
