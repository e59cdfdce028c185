using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.AttentionGuard;

/// <summary>
/// OULAD's studentVle table (id_student, code_module, code_presentation, id_site, date, sum_click) from the simulator's
/// events: one row per learner, day and site with clicks that day. Each event kind stands for one VLE site; its
/// activity_type follows OULAD's vle table. Daily sums are all OULAD carries — no 30-s timing survives.
/// </summary>
public static class OuladLikeGenerator
{
    /// <summary>The activity_type standing for each <see cref="EventKind"/> (OULAD's vle.activity_type vocabulary).</summary>
    public static IReadOnlyList<string> ActivityTypes { get; } = ["resource", "oucontent", "forumng", "homepage", "url", "quiz"];

    /// <summary>The id_site of each event kind.</summary>
    public static int SiteOf(EventKind kind) => 546_000 + (int)kind;

    /// <summary>studentVle rows: one per learner, day (date) and site with at least one click.</summary>
    public static DataFrame StudentVle(IReadOnlyList<SimulatedLearner> learners, string module = "AAA", string presentation = "2026J")
    {
        ArgumentNullException.ThrowIfNull(learners);
        var rows = learners.SelectMany(l => l.Sessions.SelectMany(s => s.Events.GroupBy(e => e.Kind).OrderBy(g => g.Key)
            .Select(g => (Student: s.Learner, Date: s.Day, Site: SiteOf(g.Key), Clicks: g.Count())))).ToList();
        return new DataFrame(
            new Int32DataFrameColumn("id_student", rows.Select(r => r.Student)),
            new StringDataFrameColumn("code_module", rows.Select(_ => module)),
            new StringDataFrameColumn("code_presentation", rows.Select(_ => presentation)),
            new Int32DataFrameColumn("id_site", rows.Select(r => r.Site)),
            new Int32DataFrameColumn("date", rows.Select(r => r.Date)),
            new Int32DataFrameColumn("sum_click", rows.Select(r => r.Clicks)));
    }

    /// <summary>Daily clicks per activity type [learner-days][kinds] — the features a model trained on OULAD could use.</summary>
    public static double[] DailyClicks(EventStream session)
    {
        ArgumentNullException.ThrowIfNull(session);
        var counts = new double[ActivityTypes.Count];
        foreach (var e in session.Events) counts[(int)e.Kind]++;
        return counts;
    }
}
