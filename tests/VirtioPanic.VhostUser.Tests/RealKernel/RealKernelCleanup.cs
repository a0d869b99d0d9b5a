namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>Removes what the real-kernel tests built for the whole run (guest modules) once every test is done.</summary>
[SetUpFixture]
internal sealed class RealKernelCleanup
{
    [OneTimeTearDown]
    public void DeleteSharedBuilds() => GuestModuleBuilder.DeleteBuilds();
}
