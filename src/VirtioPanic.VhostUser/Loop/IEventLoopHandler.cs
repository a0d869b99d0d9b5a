namespace VirtioPanic.VhostUser.Loop;

// What the event loop calls (VhostUserEventLoop); every call is on the loop thread.
internal interface IEventLoopHandler
{
    // A registered descriptor is ready: epoll's event bits, and the tag it was registered with
    // (which of the handler's descriptors: its socket, ring n's kick, ...).
    void OnReady(uint events, int tag);

    // A deadline the handler scheduled (VhostUserEventLoop.Schedule) is due; the handler checks
    // its own deadlines against now (Environment.TickCount64) and schedules the next one.
    void OnTimer(long now);

    // OnReady or OnTimer threw: a bug, not front-end input (that gets typed refusals). The
    // handler ends what it serves; the loop goes on with everyone else.
    void OnFault(Exception exception);
}
