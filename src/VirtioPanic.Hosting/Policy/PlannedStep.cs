using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Policy;

// One VM-control call of a plan; BootReason is what a Reset sets on the device first.
internal readonly record struct PlannedStep(VmOperation Operation, WatchdogBootReason BootReason = WatchdogBootReason.None);
