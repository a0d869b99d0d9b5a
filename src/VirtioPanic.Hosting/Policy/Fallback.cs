namespace VirtioPanic.Hosting.Policy;

internal readonly record struct Fallback(FallbackKind Kind, PlannedStep Step);
