using System.Runtime.CompilerServices;

// Guest-memory views and ring scratch buffers are always written before they are read; zeroing
// stack locals would only cost time on the hot path (style.md §5.13).
[module: SkipLocalsInit]
