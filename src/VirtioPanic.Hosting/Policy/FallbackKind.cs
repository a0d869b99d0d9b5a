namespace VirtioPanic.Hosting.Policy;

internal enum FallbackKind
{
    // Nothing more to try: the failure is reported.
    None,

    // The plan's remaining steps are the fallback (a failed dump before destroy/restart).
    ContinueWithRemaining,

    // Run Fallback.Step instead of the rest of the plan.
    Run,
}
