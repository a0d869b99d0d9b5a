namespace VirtioPanic.Host.Demo;

internal enum DemoVmState
{
    Running,
    Paused,
    Off,
}
