namespace VirtioPanic.Host.Demo;

// What the demo guest does (the --scenario option).
internal enum DemoScenario
{
    // Boots, arms the watchdog, pets it, panics with a message.
    Panic,

    // Boots, arms the watchdog with a pretimeout, pets it twice, then hangs.
    WatchdogStall,

    // Panics with a crash kernel loaded; the crash kernel saves a dump, reports a shutdown and reboots.
    CrashKernel,

    // Boots, arms and pets the watchdog, then shuts down cleanly.
    Shutdown,

    // Panics at every boot: the policy restarts it until the storm guard preserves it.
    PanicStorm,

    // Two vCPUs pet their vcpu_heartbeat slots; one hard-locks: the device's VCPU_STALL notice, the guest panics naming it.
    VcpuStall,
}
