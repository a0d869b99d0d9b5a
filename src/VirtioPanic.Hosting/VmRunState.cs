namespace VirtioPanic.Hosting;

// The VM's run state as its monitor reports it: whether it runs, and QMP's RunState name
// (qapi/run-state.json: running, paused, guest-panicked, shutdown, internal-error, ...).
internal readonly record struct VmRunState(bool Running, string Status);
